"""Raw text in, entities out: words split with character offsets, and BIO tags decoded into
entity spans.

The splitter follows PAN-X's tokenisation, which the students are trained on: words split at
whitespace (str.isspace, plus U+200B ZERO WIDTH SPACE and U+FEFF, the byte-order mark), every
punctuation mark or symbol a word of its own (`Paris,` -> `Paris` `,`), and every Han, Hiragana
or Katakana character a word of its own (PAN-X Chinese and Japanese are one character a word).
Letters, combining marks and digits stay together, so Devanagari or Arabic words keep their vowel
signs. Thai and other scripts without spaces are left in runs. A combining mark always stays with
the character before it, so a variation selector or U+20E3 never becomes a word of its own.

Some things PAN-X would cut into pieces stay one word, as raw text writes them:

- URLs: `http://`, `https://`, `ftp://` (any case) or `www.`, then everything up to the next
  whitespace, `<`, `>`, `"` or non-ASCII punctuation, symbol or format character (`。`, `»`,
  U+200B). As linkifiers do, trailing `.,;:!?'"*_~` and closing brackets without an opening one in
  the URL are left out: `(see https://x.org/a_(b)).` -> `(` `see` `https://x.org/a_(b)` `)` `.`.
- e-mail addresses (`anna.schmidt+news@example.co.uk`), @handles and #hashtags.
- numbers with inner separators `.` `,` `:` `/` (and the Arabic `٫` `٬`), each between two
  digits: `1,000.5`, `3.14`, `1.000.000`, `12:30`, `10/12/2024`.
- emoji sequences: an emoji with its variation selector, skin-tone modifier or tag characters
  (`👍🏽`, `🏴󠁧󠁢󠁳󠁣󠁴󠁿`), ZWJ sequences (`👩‍💻`), flags (two regional indicators, `🇩🇪`) and keycaps
  (`1️⃣`, `#️⃣`). Two emoji side by side are two words, as two symbols are.

These are only recognised where a word could start: `xhttps://...`, `abc1,000` or `v1.2.3` are
split the PAN-X way, and an address does not start right after `.`, `-`, `+` or `%`. Addresses,
handles, hashtags and numbers take the letters, marks and digits that follow them (`12:30pm`,
`#नरेंद्र_मोदी`), but not Han or Kana, which keep their one character a word.

An entity never begins or ends with a word of punctuation only, and is never only punctuation
(see `entities`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Sequence

# Han (CJK unified + extension A + compatibility), Hiragana, Katakana (+ phonetic extensions)
ONE_CHAR_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x3040, 0x30FF), (0x31F0, 0x31FF),
                   (0x20000, 0x2FA1F))
EXTRA_SPACES = "\u200b\ufeff"  # separate words though str.isspace says no
ZWJ = "\u200d"
KEYCAP = "\u20e3"
KEYCAP_BASES = "0123456789#*"

# _WU: a \w character but not Han or Kana, which stay one character a word even after a letter;
# _W: the same without `_`
_W = "[^\\W_" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in ONE_CHAR_RANGES) + "]"
_WU = "[^\\W" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in ONE_CHAR_RANGES) + "]"
_SEP = ".,:/\u066b\u066c"
_SPECIAL = re.compile(  # each alternative starts where no letter or digit is before it
    rf"(?<!{_WU})(?:(?P<url>(?i:https?://|ftp://|www\.)[^\W_][^\s<>\"]*)"
    rf"|(?P<email>(?<![.%+\-]){_WU}(?:{_WU}|[.%+\-])*@{_W}(?:{_WU}|-)*(?:\.{_W}(?:{_WU}|-)*)+)"
    rf"|(?P<tag>[@#]{_WU}+)"
    rf"|(?P<number>(?<!\d[{_SEP}])\d+(?:[{_SEP}]\d+)+))")
_URL_TRAILING = ".,;:!?'\"*_~"
_OPENING = {")": "(", "]": "[", "}": "{"}


@dataclass(frozen=True)
class Word:
    text: str
    start: int  # character offsets into the line: line[start:end] == text
    end: int


def _space(ch: str) -> bool:
    return ch.isspace() or ch in EXTRA_SPACES


def _one_char(ch: str) -> bool:
    """Punctuation, symbols, Han and Kana: a word of its own (with its combining marks)."""
    if unicodedata.category(ch)[0] in "PS":
        return True
    code = ord(ch)
    return any(low <= code <= high for low, high in ONE_CHAR_RANGES)


def _joins(ch: str) -> bool:
    """Whether `ch` belongs to a run of letters, marks and digits."""
    return not _space(ch) and not _one_char(ch)


def _inside_word(line: str, i: int) -> bool:
    """Whether line[i] would continue a run of letters, marks and digits: the character before it
    (past any combining marks, which stay with the character they follow) joins."""
    j = i - 1
    while j >= 0 and unicodedata.category(line[j])[0] == "M":
        j -= 1
    if j < 0 or _space(line[j]):
        return j < i - 1  # marks after a space make a word of their own
    return _joins(line[j])


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _cluster_end(line: str, i: int, stop: int) -> int:
    """The end of the character at `i` with what attaches to it: combining marks (variation
    selectors and the keycap mark among them), and after an emoji its skin-tone modifier, tag
    characters, a second regional indicator, or a ZWJ and the emoji it joins."""
    j = i + 1
    emoji = unicodedata.category(line[i]) == "So"
    if _regional(line[i]) and j < stop and _regional(line[j]):
        j += 1
    while j < stop:
        ch, code = line[j], ord(line[j])
        if unicodedata.category(ch)[0] == "M":
            j += 1
        elif emoji and (0x1F3FB <= code <= 0x1F3FF or 0xE0020 <= code <= 0xE007F):
            j += 1
        elif emoji and ch == ZWJ and j + 1 < stop and unicodedata.category(line[j + 1]) == "So":
            j += 2
        else:
            break
    return j


def _split_plain(line: str, start: int, stop: int, words: list[Word]) -> None:
    """PAN-X splitting of line[start:stop], appended to `words`."""
    begin, i = None, start  # begin: where the current run of letters, marks and digits started
    while i < stop:
        if _space(line[i]):
            j, alone, space = i + 1, False, True
        else:
            j = _cluster_end(line, i, stop)
            alone = _one_char(line[i]) or (line[i] in KEYCAP_BASES and KEYCAP in line[i + 1:j])
            space = False
        if (space or alone) and begin is not None:
            words.append(Word(line[begin:i], begin, i))
            begin = None
        if alone:
            words.append(Word(line[i:j], i, j))
        elif not space and begin is None:
            begin = i
        i = j
    if begin is not None:
        words.append(Word(line[begin:stop], begin, stop))


def _trim_url(url: str) -> str:
    for i, ch in enumerate(url):
        if ord(ch) > 127 and unicodedata.category(ch)[0] in "PSZC":
            url = url[:i]
            break
    while url[-1] in _URL_TRAILING or (url[-1] in _OPENING and url.count(url[-1]) > url.count(_OPENING[url[-1]])):
        url = url[:-1]  # never empty: a URL starts with its scheme or www.
    return url


def split_words(line: str) -> list[Word]:
    """The words of a line of raw text, with their offsets (see the module's docstring)."""
    words: list[Word] = []
    pos = search = 0
    while m := _SPECIAL.search(line, search):
        start = m.start()
        if _inside_word(line, start):  # not where a word starts
            search = start + 1
            continue
        if m.lastgroup == "url":
            end = start + len(_trim_url(m.group()))
        else:
            end = m.end()
            while end < len(line) and (_joins(line[end]) or (m.lastgroup == "tag" and line[end] == "_")):
                end += 1
        _split_plain(line, pos, start, words)
        words.append(Word(line[start:end], start, end))
        pos = search = end
    _split_plain(line, pos, len(line), words)
    return words


def is_punctuation(text: str) -> bool:
    """Whether a word is punctuation only: Unicode category P*, with any combining marks on it."""
    return bool(text) and unicodedata.category(text[0])[0] == "P" and all(
        unicodedata.category(ch)[0] in "PM" for ch in text)


def _split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") from "B-PER"; ("O", "") from "O"."""
    prefix, _, kind = tag.partition("-")
    return (prefix, kind) if kind else ("O", "")


def entities(line: str, words: Sequence[Word], tags: Sequence[str], scores: Sequence[float]) -> list[dict]:
    """BIO tags of `words` as entity spans {text, label, start, end, score}. An I- tag that does
    not continue an entity of its type starts one (no entity starts with I-). Punctuation-only
    words (is_punctuation) are trimmed off both ends of a span, and a span of nothing but
    punctuation is dropped, so no entity is `(` or ends in one. `scores[i]` is the probability the
    model gives word i's tag (xdray.data.windows.tag_words: the softmax over the labels at the
    word's first sub-token, its largest value); an entity's score is their mean over the words
    it keeps, rounded to 4 places."""
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
        while first <= last and is_punctuation(words[first].text):
            first += 1
        while last >= first and is_punctuation(words[last].text):
            last -= 1
        if first > last:
            continue
        start, end = words[first].start, words[last].end
        score = sum(float(s) for s in scores[first:last + 1]) / (last - first + 1)
        out.append({"text": line[start:end], "label": kind, "start": start, "end": end, "score": round(score, 4)})
    return out
