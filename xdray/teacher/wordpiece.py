"""A deterministic WordPiece vocabulary learner for teachers built offline.

`tokenizers`' WordPieceTrainer assigns ids to continuation pieces in hash-map order, so the same
text gives a different vocabulary in every process (huggingface/tokenizers#1794), and with it a
different teacher. This learner runs the same algorithm (BPE merges over word counts, with `##`
continuation pieces) with ties broken by the pieces themselves: the same text always gives the same
vocabulary, in the same order. Normalisation and pre-tokenisation are BERT's (cased, accents kept).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from typing import Iterable, Sequence

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
Pair = tuple[str, str]


def word_counts(sentences: Iterable[Sequence[str]]) -> Counter:
    """Counts of pre-tokenised words after BERT normalisation (cased, CJK split, accents kept)."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for words in sentences:
        text = normalizer.normalize_str(" ".join(words))
        counts.update(piece for piece, _ in pre.pre_tokenize_str(text))
    return counts


def _merge(symbols: list[str], pair: Pair, merged: str) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
            out.append(merged)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def learn_vocabulary(counts: Counter, vocab_size: int, min_frequency: int = 2,
                     specials: Sequence[str] = SPECIAL_TOKENS) -> list[str]:
    """Specials, then the alphabet (initial and ## forms, sorted), then merged pieces in the order
    learnt: the most frequent adjacent pair first, ties broken by the pair's text."""
    words = sorted(counts)
    freq = [counts[w] for w in words]
    symbols = [[w[0]] + ["##" + c for c in w[1:]] for w in words]
    vocab = list(specials) + sorted({s for syms in symbols for s in syms} - set(specials))
    known = set(vocab)
    pair_counts: dict[Pair, int] = defaultdict(int)
    where: dict[Pair, set[int]] = defaultdict(set)
    for i, syms in enumerate(symbols):
        for pair in zip(syms, syms[1:]):
            pair_counts[pair] += freq[i]
            where[pair].add(i)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative:
            continue  # stale entry; the current count was pushed when it changed
        if -negative < min_frequency:
            break
        merged = pair[0] + pair[1][2:]  # the right piece is always a ## continuation
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
        changed: set[Pair] = set()
        for i in sorted(where.pop(pair, ())):
            old = symbols[i]
            new = _merge(old, pair, merged)
            if new == old:
                continue
            for p in zip(old, old[1:]):
                pair_counts[p] -= freq[i]
                changed.add(p)
            for p in zip(new, new[1:]):
                pair_counts[p] += freq[i]
                where[p].add(i)
                changed.add(p)
            symbols[i] = new
        pair_counts.pop(pair, None)
        for p in changed:
            if pair_counts.get(p, 0) > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
    return vocab


def train_wordpiece(sentences: Iterable[Sequence[str]], vocab_size: int):
    """A cased BERT WordPiece tokenizer (fast) with a vocabulary learnt from `sentences`."""
    from transformers import BertTokenizerFast

    vocab = learn_vocabulary(word_counts(sentences), vocab_size)
    return BertTokenizerFast(vocab={piece: i for i, piece in enumerate(vocab)}, do_lower_case=False,
                             strip_accents=False)
