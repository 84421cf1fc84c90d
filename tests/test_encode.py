import numpy as np
import pytest

from xdray.core.metrics import IGNORE_INDEX
from xdray.data.encode import encode_batch
from xdray.teacher.wordpiece import train_wordpiece

CORPUS = [["Angela", "Merkel", "visited", "Washington"], ["The", "Bundestag", "met", "in", "Berlin"],
          ["Москва", "большая"], ["राहुल", "दिल्ली", "गए"]] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece(CORPUS, vocab_size=200)


def test_label_sits_on_first_sub_token_only(tokenizer):
    words = ["Berliner", "Merkel"]
    ids, labels, stats = encode_batch(tokenizer, [words], [[3, 1]], max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    first_word_pieces = pieces[1:-2]
    assert len(first_word_pieces) >= 2 and "[UNK]" not in pieces, "the made-up word must split into several pieces"
    expected = np.full(len(pieces), IGNORE_INDEX)
    word_ids = tokenizer([words], is_split_into_words=True).word_ids(0)
    expected[word_ids.index(0)] = 3
    expected[word_ids.index(1)] = 1
    assert labels[0].tolist() == expected.tolist()
    assert (labels[0] != IGNORE_INDEX).sum() == 2
    assert stats.truncated_sentences == 0 and stats.words == 2


def test_truncation_is_counted(tokenizer):
    long = ["Berlin"] * 50
    ids, labels, stats = encode_batch(tokenizer, [long, ["Berlin"]], [[5] * 50, [5]], max_length=12)
    assert len(ids[0]) == 12 and ids[0].dtype == np.int32
    assert stats.truncated_sentences == 1
    kept = int((labels[0] != IGNORE_INDEX).sum())
    assert stats.truncated_words == 50 - kept


def test_unlabelled_encoding_has_no_labels(tokenizer):
    ids, labels, stats = encode_batch(tokenizer, [["Москва", "большая"]], None, max_length=32)
    assert labels is None and len(ids) == 1
    assert tokenizer.unk_token_id not in ids[0].tolist()
