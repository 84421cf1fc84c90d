"""Strict reader for CoNLL-style IOB files (PAN-X / WikiANN layout).

One `token<TAB or space>TAG` per line, a blank line between sentences, `-DOCSTART-` lines skipped.
Tokens may carry a raw-WikiANN language prefix (`en:London`); otherwise the language comes from the
caller or the file name (`train-en.tsv`). A UTF-8 BOM and CRLF line ends are accepted. Every error
names `file:line` and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from xdray.core.errors import DataError

_PREFIX = re.compile(r"^([a-z]{2,3}):(.+)$")
_LANG_IN_NAME = re.compile(r"(?:^|[-_.])([a-z]{2,3})\.(?:tsv|txt|conll|iob|bio)$")


@dataclass
class IobFile:
    """Sentences read from one file; tags are indices into the label list given to the reader."""

    path: Path
    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[int]] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    i_after_o: int = 0  # I-X tags that follow O or another type (WikiANN has them; kept as is)


def language_from_filename(path: Path) -> str | None:
    """`train-en.tsv` -> "en"; None when the name holds no language code."""
    match = _LANG_IN_NAME.search(path.name)
    return match.group(1) if match else None


def _decode(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.split(b"\n")
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{number}: invalid UTF-8 at byte {err.start} of the line "
                            f"({raw[max(0, err.start - 8):err.start + 8]!r}); files must be UTF-8") from None
    return out


def _split(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def _has_prefixes(lines: list[str]) -> bool:
    """True when every token line carries an `ll:` language prefix (raw WikiANN)."""
    seen = False
    for line in lines:
        if not line.strip() or line.startswith("-DOCSTART-"):
            continue
        if not _PREFIX.match(_split(line)[0]):
            return False
        seen = True
    return seen


def read_iob_file(path: str | Path, labels: Sequence[str], lang: str | None = None) -> IobFile:
    """Read one IOB file. `labels` is the experiment's label list; any other tag is an error."""
    path = Path(path)
    label_index = {tag: i for i, tag in enumerate(labels)}
    lines = _decode(path)
    prefixed = _has_prefixes(lines)
    file_lang = lang or language_from_filename(path)
    if not prefixed and file_lang is None:
        raise DataError(f"{path}: cannot tell the language: tokens carry no 'll:' prefix and the "
                        "file name has no language code (expected e.g. train-en.tsv)")
    result = IobFile(path=path)
    tokens: list[str] = []
    tags: list[int] = []
    sentence_lang = file_lang
    previous = "O"

    def close_sentence() -> None:
        nonlocal tokens, tags, previous
        if tokens:
            result.tokens.append(tokens)
            result.tags.append(tags)
            result.langs.append(sentence_lang)
        tokens, tags, previous = [], [], "O"

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            close_sentence()
            continue
        columns = _split(line)
        if columns[0] == "-DOCSTART-":
            close_sentence()
            continue
        if len(columns) != 2:
            raise DataError(f"{path}:{number}: expected 2 columns (token<TAB>TAG), found "
                            f"{len(columns)}: {line[:80]!r}")
        token, tag = columns[0], columns[1].strip()
        if tag not in label_index:
            raise DataError(f"{path}:{number}: unknown tag {tag!r} (expected one of "
                            f"{', '.join(labels)})")
        if prefixed:
            prefix, token = _PREFIX.match(token).groups()
            if not tokens:
                sentence_lang = lang or prefix
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            result.i_after_o += 1
        tokens.append(token)
        tags.append(label_index[tag])
        previous = tag
    close_sentence()
    if not result.tokens:
        raise DataError(f"{path}: no sentences (the file is empty or holds only -DOCSTART- lines)")
    return result
