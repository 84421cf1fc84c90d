import json
import subprocess
import sys
from collections import Counter

from xdray.teacher.wordpiece import SPECIAL_TOKENS, learn_vocabulary, train_wordpiece


def test_merges_follow_counts_and_break_ties_by_text():
    vocab = learn_vocabulary(Counter({"ab": 5, "abc": 3, "xy": 5}), vocab_size=100)
    alphabet = ["##b", "##c", "##y", "a", "x"]
    assert vocab[:len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert vocab[len(SPECIAL_TOKENS):len(SPECIAL_TOKENS) + 5] == alphabet
    # (a, ##b) occurs 8 times, (x, ##y) 5, then (ab, ##c) 3
    assert vocab[len(SPECIAL_TOKENS) + 5:] == ["ab", "xy", "abc"]


def test_min_frequency_and_vocab_size_bound_the_merges():
    counts = Counter({"hello": 1, "world": 1})
    assert len(learn_vocabulary(counts, vocab_size=100)) == len(SPECIAL_TOKENS) + 7  # h w ##e ##l ##o ##r ##d; no pair occurs twice
    counts = Counter({"aaaa": 10})
    assert len(learn_vocabulary(counts, vocab_size=len(SPECIAL_TOKENS) + 3)) == len(SPECIAL_TOKENS) + 3


SCRIPT = """
import json, sys
from xdray.data import synthetic
from xdray.teacher.wordpiece import train_wordpiece
sents = [t for lang in synthetic.LANGUAGES for t, _ in synthetic.generate(lang, "train", 200, 0)]
print(json.dumps(train_wordpiece(sents, 1500).get_vocab(), sort_keys=True))
"""


def test_same_text_same_vocabulary_in_every_process():
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1]
    vocab = json.loads(runs[0])
    assert vocab["[PAD]"] == 0 and len(vocab) > 500


def test_tokenizer_is_cased_and_splits_into_known_pieces():
    tok = train_wordpiece([["Berlin", "Berliner", "berlin"]] * 3, vocab_size=100)
    assert tok.is_fast
    assert tok.tokenize("Berliner berlin") == ["Berliner", "berlin"]
    assert tok.tokenize("Berlinerin") == ["Berliner", "##i", "##n"]
