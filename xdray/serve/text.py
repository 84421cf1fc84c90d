"""Raw text in, entities out: words split with character offsets, and BIO tags decoded into
entity spans.

The splitter follows PAN-X's tokenisation, which the students are trained on: words split at
whitespace, every punctuation mark or symbol a word of its own (`Paris,` -> `Paris` `,`), and every
Han, Hiragana or Katakana character a word of its own (PAN-X Chinese and Japanese are one
character a word). Letters, combining marks and digits stay together, so Devanagari or Arabic
words keep their vowel signs. Thai and other scripts without spaces are left in runs.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Sequence

# Han (CJK unified + extension A + compatibility), Hiragana, Katakana (+ phonetic extensions)
ONE_CHAR_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x3040, 0x30FF), (0x31F0, 0x31FF),
                   (0x20000, 0x2FA1F))


@dataclass(frozen=True)
class Word:
    text: str
    start: int  # character offsets into the line: line[start:end] == text
    end: int


def _one_char_word(ch: str) -> bool:
    if unicodedata.category(ch)[0] in "PS":
        return True
    code = ord(ch)
    return any(low <= code <= high for low, high in ONE_CHAR_RANGES)


def split_words(line: str) -> list[Word]:
    """The words of a line of raw text, with their offsets."""
    words, start = [], None
    for i, ch in enumerate(line):
        if ch.isspace() or _one_char_word(ch):
            if start is not None:
                words.append(Word(line[start:i], start, i))
                start = None
            if not ch.isspace():
                words.append(Word(ch, i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        words.append(Word(line[start:], start, len(line)))
    return words


def _split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") from "B-PER"; ("O", "") from "O"."""
    prefix, _, kind = tag.partition("-")
    return (prefix, kind) if kind else ("O", "")


def entities(line: str, words: Sequence[Word], tags: Sequence[str], scores: Sequence[float]) -> list[dict]:
    """BIO tags of `words` as entity spans {text, label, start, end, score}. An I- tag that does
    not continue an entity of its type starts one (no entity starts with I-); score is the mean
    probability of the entity's word tags."""
    spans: list[tuple[str, int, int]] = []  # (label, first word, last word)
    for i, tag in enumerate(tags):
        prefix, kind = _split_tag(tag)
        if prefix == "O":
            continue
        if prefix == "I" and spans and spans[-1][0] == kind and spans[-1][2] == i - 1:
            spans[-1] = (kind, spans[-1][1], i)
        else:
            spans.append((kind, i, i))
    out = []
    for kind, first, last in spans:
        start, end = words[first].start, words[last].end
        score = sum(float(s) for s in scores[first:last + 1]) / (last - first + 1)
        out.append({"text": line[start:end], "label": kind, "start": start, "end": end, "score": round(score, 4)})
    return out
