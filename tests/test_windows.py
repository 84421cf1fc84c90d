"""Windowed inference: every word of a sentence longer than max_length is tagged, from a window
that holds it with context, on WordPiece and SentencePiece tokenizers alike."""

import numpy as np
import pytest
import torch

from test_converted import tiny_pieces, write_tokenizer
from xdray.data.schema import WIKIANN_LABELS
from xdray.data.windows import Frame, evaluate_words, tag_words, window_spans, word_view
from xdray.teacher.wordpiece import train_wordpiece

WORDS = ["Angela", "Merkel", "visited", "Washington", "and", "the", "Bundestag", "in", "Berlin", "Москва"]


@pytest.fixture(scope="module", params=["wordpiece", "sentencepiece"])
def tokenizer(request, tmp_path_factory):
    if request.param == "wordpiece":
        return train_wordpiece([WORDS] * 20, vocab_size=200)
    from transformers import PreTrainedTokenizerFast

    folder = write_tokenizer(tmp_path_factory.mktemp("spm"), tiny_pieces())
    return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>")


@pytest.mark.parametrize("length", [1, 7, 8, 9, 30, 31, 100, 257])
@pytest.mark.parametrize("body", [4, 8, 30])
def test_windows_tile_the_sequence_with_context(length, body):
    spans = window_spans(length, body)
    owned = [i for _, _, own_start, own_end in spans for i in range(own_start, own_end)]
    assert owned == list(range(length))
    context = body // 4
    for start, end, own_start, own_end in spans:
        assert 0 <= start <= own_start < own_end <= end <= length and end - start <= body
        assert own_start - start >= min(context, own_start)  # context on the left, where there is any
        assert end - own_end >= min(context, length - own_end)  # and on the right


def lookup_model(num_labels: int):
    """A context-free tagger: the label of a piece is its id mod num_labels, specials excepted."""
    def logits_of(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(ids % num_labels, num_labels).float() * 5.0
    return logits_of


def test_every_word_of_a_long_sentence_is_tagged(tokenizer):
    sentence = WORDS * 12  # far past max_length 16 in pieces
    view = word_view(tokenizer, [sentence, WORDS[:2]], max_length=16)
    assert len(view.pieces[0]) > 4 * 16
    C = len(WIKIANN_LABELS)
    tags, scores = tag_words(lookup_model(C), view, batch_size=3)
    assert [len(t) for t in tags] == [len(sentence), 2]
    for s in range(2):
        expected = view.pieces[s][view.firsts[s]] % C
        assert tags[s].tolist() == expected.tolist()
        assert np.all((scores[s] > 0.9) & (scores[s] <= 1.0))


def test_frame_wraps_each_window_like_the_tokenizer(tokenizer):
    frame = Frame.of(tokenizer)
    whole = tokenizer(WORDS, is_split_into_words=True)["input_ids"]
    view = word_view(tokenizer, [WORDS], max_length=128)
    assert [*frame.prefix, *view.pieces[0].tolist(), *frame.suffix] == whole
    assert frame.pad_id == tokenizer.pad_token_id


def test_short_sentences_are_tagged_as_one_forward_would(tokenizer):
    """Below max_length the windowed path is exactly one forward over the framed sentence."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(8, 7, batch_first=True)
    embed = torch.nn.Embedding(len(tokenizer), 8)
    logits_of = lambda ids, mask: lstm(embed(ids))[0]  # noqa: E731
    view = word_view(tokenizer, [WORDS, WORDS[3:6]], max_length=64)
    tags, _ = tag_words(logits_of, view, batch_size=1)
    for s, words in enumerate([WORDS, WORDS[3:6]]):
        enc = tokenizer(words, is_split_into_words=True)
        with torch.inference_mode():
            best = logits_of(torch.tensor([enc["input_ids"]]), None)[0].argmax(-1)
        firsts = [enc.word_ids().index(w) for w in range(len(words))]
        assert tags[s].tolist() == best[firsts].tolist()


def test_evaluation_scores_words_past_the_length_limit(tokenizer):
    """A tagger that is right everywhere scores 1.0 over every word; truncated evaluation would
    have left the long sentence's tail out, and a wrong tail must lower the score."""
    C = len(WIKIANN_LABELS)
    sentences = [WORDS * 8, WORDS]
    view = word_view(tokenizer, sentences, max_length=16)
    right = [(p[f] % C) for p, f in zip(view.pieces, view.firsts)]
    view.gold = right
    assert evaluate_words(lookup_model(C), view, ["en", "de"], WIKIANN_LABELS)["f1_mean"] == 1.0
    wrong_tail = [right[0].copy(), right[1]]
    wrong_tail[0][-len(WORDS):] = np.where(wrong_tail[0][-len(WORDS):] == 1, 3, 1)  # B-PER <-> B-ORG
    view.gold = wrong_tail
    assert evaluate_words(lookup_model(C), view, ["en", "de"], WIKIANN_LABELS)["per_language"]["en"] < 1.0


def test_max_length_must_leave_room_for_text(tokenizer):
    with pytest.raises(ValueError, match="max_length 2"):
        word_view(tokenizer, [WORDS], max_length=2)
