import numpy as np
import pytest
import torch

from xdray.core.metrics import count_parameters
from xdray.distill.saved import load_student, save_student
from xdray.distill.student import PAD, UNFREEZE_ORDER, UNK, BiLSTMStudent, StudentSpec
from xdray.distill.vocab import Vocabulary, init_embedding
from xdray.teacher.wordpiece import train_wordpiece

SPEC = StudentSpec(vocab_size=20, embedding_dim=6, hidden_size=5, projection_dim=8, num_labels=7, dropout=0.0)


def test_exact_parameter_count():
    model = BiLSTMStudent(SPEC)
    V, E, H, D, C = 20, 6, 5, 8, 7
    lstm = 2 * (4 * H * E + 4 * H * H + 2 * 4 * H)  # two directions, W_ih, W_hh, two biases
    assert count_parameters(model) == V * E + lstm + (2 * H * D + D) + (D * C + C)


def test_padding_costs_nothing_and_changes_nothing():
    torch.manual_seed(0)
    model = BiLSTMStudent(SPEC).eval()
    ids = torch.tensor([[3, 4, 5]])
    short_proj, short_logits = model(ids, torch.tensor([3]))
    padded = torch.tensor([[3, 4, 5, PAD, PAD], [6, 7, 8, 9, 10]])
    proj, logits = model(padded, torch.tensor([3, 5]))
    assert logits.shape == (2, 5, 7) and proj.shape == (2, 5, 8)
    torch.testing.assert_close(logits[0, :3], short_logits[0])  # the backward LSTM starts at the real end


def test_vocabulary_restricts_and_maps_unknown_pieces_to_unk():
    tok = train_wordpiece([["Berlin", "Paris"], ["Rom"]] * 3, 60)
    seen = [np.array(tok(["Berlin"], is_split_into_words=True)["input_ids"])]
    vocab = Vocabulary.from_data(seen, tok)
    assert vocab.teacher_ids[:2] == [tok.pad_token_id, tok.unk_token_id]
    assert len(vocab) == 5 + 1  # specials + "Berlin"
    paris = tok.convert_tokens_to_ids("Paris")
    berlin = tok.convert_tokens_to_ids("Berlin")
    mapped = vocab.map(torch.tensor([tok.pad_token_id, berlin, paris]))
    assert mapped.tolist() == [PAD, vocab.teacher_ids.index(berlin), UNK]


def test_a_frequency_cut_keeps_the_most_frequent_pieces():
    tok = train_wordpiece([["Berlin", "Paris", "Rom"]] * 3, 60)
    ids = {w: tok.convert_tokens_to_ids(w) for w in ("Berlin", "Paris", "Rom")}
    seen = [np.array([ids["Berlin"]] * 3 + [ids["Paris"]] * 2 + [ids["Rom"]])]
    full = Vocabulary.from_data(seen, tok)
    cut = Vocabulary.from_data(seen, tok, max_size=len(full) - 1)  # one piece too many: the rarest goes
    assert len(cut) == len(full) - 1 and ids["Rom"] not in cut.teacher_ids
    assert cut.map(torch.tensor([ids["Rom"], ids["Berlin"]])).tolist()[0] == UNK
    assert cut.teacher_ids[:2] == [tok.pad_token_id, tok.unk_token_id]  # specials are always kept
    assert Vocabulary.from_data(seen, tok, max_size=2).teacher_ids[:2] == cut.teacher_ids[:2]


def teacher_rows(v=20, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, 3, generator=g) @ torch.randn(3, d, generator=g) + 0.01 * torch.randn(v, d, generator=g)


@pytest.mark.parametrize("method", ["svd", "pca", "random"])
def test_embedding_init(method):
    model = BiLSTMStudent(SPEC)
    vocab = Vocabulary(list(range(20)), 20)
    rows = teacher_rows()
    init_embedding(model, rows, vocab, method, seed=1)
    weight = model.embedding.weight.detach().double()
    assert torch.all(weight[PAD] == 0)
    if method == "random":
        assert weight[1:].abs().max() <= 0.1
    else:
        data = rows.double() - (rows.double().mean(0) if method == "pca" else 0)
        _, s, vt = torch.linalg.svd(data, full_matrices=False)
        expected = data @ vt[:6].T
        torch.testing.assert_close(weight[1:, :6].abs(), expected[1:].abs().to(weight.dtype), atol=1e-5, rtol=1e-4)
        # rank-3 rows: three directions carry nearly all the energy
        assert s[:3].pow(2).sum() / s.pow(2).sum() > 0.99


def test_unfreezing_sets_exactly_the_named_groups():
    model = BiLSTMStudent(SPEC)
    model.set_trainable(UNFREEZE_ORDER[:2])
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"output", "projection"}


def test_save_load_round_trip(tmp_path):
    tok = train_wordpiece([["Berlin", "Paris"]] * 3, 60)
    torch.manual_seed(3)
    model = BiLSTMStudent(SPEC).eval()
    vocab = Vocabulary(list(range(20)), len(tok))
    save_student(tmp_path / "student", model, vocab, ["O"] * 7, tok)
    files = {p.name for p in (tmp_path / "student").iterdir()}
    assert {"config.json", "model.safetensors", "vocab.json", "tokenizer.json"} <= files
    loaded, vocab2, labels, tok2 = load_student(tmp_path / "student")
    ids, lengths = torch.tensor([[2, 5, 9]]), torch.tensor([3])
    torch.testing.assert_close(loaded(ids, lengths)[1], model(ids, lengths)[1])
    assert vocab2.teacher_ids == vocab.teacher_ids and labels == ["O"] * 7
    assert tok2.tokenize("Berlin") == ["Berlin"]
