"""Strict reader for CoNLL-style column files (CoNLL-2003, PAN-X / WikiANN, Universal NER iob2).

One token a line in columns separated by tabs (or, where a line has no tab, by whitespace), a blank
line between sentences. The token is in `token_column` (default 0, the first), the tag in
`tag_column` (default -1, the last): `token POS chunk NER` and `index token tag - annotator` files
read with the right two indices. `-DOCSTART-` lines are skipped, and so are `#` comment lines
(CoNLL-U style `# sent_id = ...`): a line starting with `#` is a token only when it has the
file's columns and a tag where the tag goes. Tags are converted to IOB2 from the declared scheme
(`xdray.data.tags`). Tokens may carry a raw-WikiANN language prefix (`en:London`); otherwise the
language comes from the caller or the file name (`train-en.tsv`). A UTF-8 BOM and CRLF line ends
are accepted. Every error names `file:line` and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from xdray.core.errors import DataError
from xdray.data.tags import TagConverter, split_tag

_PREFIX = re.compile(r"^([a-z]{2,3}):(.+)$")
_LANG_IN_NAME = re.compile(r"(?:^|[-_.])([a-z]{2,3})\.(?:tsv|txt|conll|iob|iob2|bio)$")


@dataclass(frozen=True)
class Columns:
    """Where the token and the tag are on a line (Python indices: negative counts from the end)."""

    token: int = 0
    tag: int = -1


@dataclass
class IobFile:
    """Sentences read from one file, tags converted to IOB2 strings."""

    path: Path
    tokens: list[list[str]] = field(default_factory=list)
    tags: list[list[str]] = field(default_factory=list)
    langs: list[str] = field(default_factory=list)
    first_lines: list[int] = field(default_factory=list)  # line of each sentence's first token
    step: int = 1  # lines from one word to the next (0 where a sentence is one row of a dataset)
    # the lines of the words of a sentence that a `#` comment interrupts, by sentence index
    scattered: dict[int, list[int]] = field(default_factory=dict)
    label_order: tuple[str, ...] | None = None  # the order the source gives its tags (a ClassLabel's)
    i_after_o: int = 0  # I-X tags that begin an entity in an iob2 file (WikiANN has them; kept as is)


    def line_of(self, sentence: int, word: int) -> int:
        """The line (or dataset row) of one word, for messages."""
        if sentence in self.scattered:
            return self.scattered[sentence][word]
        return self.first_lines[sentence] + word * self.step


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
    out = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            out.append(raw.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as err:
            raise DataError(f"{path}:{number}: invalid UTF-8 at byte {err.start} of the line "
                            f"({raw[max(0, err.start - 8):err.start + 8]!r}); files must be UTF-8") from None
    return out


def _split(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def _is_token_line(line: str, width: int | None, columns: Columns) -> bool:
    """A `#` line is a comment unless it has the file's columns with a tag where the tag goes
    (a `#` token in a two-column file: `#<TAB>O`)."""
    if not line.startswith("#"):
        return True
    parts = _split(line)
    if width is None or len(parts) != width:
        return False
    return split_tag(parts[columns.tag].strip()) is not None


def _width(lines: list[str]) -> int | None:
    """The column count of the file's first token line (not blank, DOCSTART or `#`)."""
    for line in lines:
        if line.strip() and not line.startswith(("#", "-DOCSTART-")):
            return len(_split(line))
    return None


def _has_prefixes(lines: list[str], width: int | None, columns: Columns) -> bool:
    """True when every token carries an `ll:` language prefix (raw WikiANN)."""
    seen = False
    for line in lines:
        if not line.strip() or line.startswith("-DOCSTART-") or not _is_token_line(line, width, columns):
            continue
        parts = _split(line)
        if len(parts) != width or not _PREFIX.match(parts[columns.token]):
            return False
        seen = True
    return seen


def _layout(width: int, columns: Columns) -> str:
    names = ["?"] * width
    names[columns.token] = "token"
    names[columns.tag] = "TAG"
    return "<TAB>".join(names)


def read_iob_file(path: str | Path, labels: Sequence[str] | None = None, lang: str | None = None,
                  scheme: str | None = "iob2", columns: Columns = Columns(), require_lang: bool = True) -> IobFile:
    """Read one column file. `labels`, where given, is the experiment's label list and any other
    tag (after conversion to IOB2) is an error; None accepts every well-formed tag. `scheme` None
    reads tokens only (unlabelled text): the tags are kept as they are, unchecked."""
    path = Path(path)
    lines = _decode(path)
    width = _width(lines)
    if width is not None:
        checked = (("token_column", columns.token), ("tag_column", columns.tag))[:2 if scheme else 1]
        for key, index in checked:
            if not -width <= index < width:
                raise DataError(f"{path}: {key} {index} is outside the file's {width} columns")
        if scheme and (width < 2 or columns.token % width == columns.tag % width):
            raise DataError(f"{path}: expected a token and a tag column, found {width} column(s) "
                            f"(token_column {columns.token}, tag_column {columns.tag})")
    prefixed = _has_prefixes(lines, width, columns)
    file_lang = lang or language_from_filename(path)
    if not prefixed and file_lang is None and require_lang:
        raise DataError(f"{path}: cannot tell the language: tokens carry no 'll:' prefix and the "
                        "file name has no language code (expected e.g. train-en.tsv)")
    converter = TagConverter(scheme, str(path))
    result = IobFile(path=path)
    sentence: list[tuple[str, str, int]] = []  # (token, tag, line)
    sentence_lang = file_lang or "und"

    def close_sentence() -> None:
        nonlocal sentence
        if sentence:
            tags, numbers = [g for _, g, _ in sentence], [n for _, _, n in sentence]
            if numbers[-1] - numbers[0] != len(numbers) - 1:
                result.scattered[len(result.tokens)] = numbers
            result.tokens.append([t for t, _, _ in sentence])
            result.tags.append(converter.convert(tags, numbers) if scheme else tags)
            result.langs.append(sentence_lang)
            result.first_lines.append(numbers[0])
        sentence = []

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            close_sentence()
            continue
        if line.startswith("-DOCSTART-"):
            close_sentence()
            continue
        if not _is_token_line(line, width, columns):
            continue
        parts = _split(line)
        if len(parts) != width:
            raise DataError(f"{path}:{number}: expected {width} columns ({_layout(width, columns)}) as on the "
                            f"file's first token line, found {len(parts)}: {line[:80]!r}")
        token, tag = parts[columns.token], parts[columns.tag].strip()
        if scheme and split_tag(tag) is None:
            raise DataError(f"{path}:{number}: {tag!r} in the tag column ({_layout(width, columns)}) is not a tag "
                            "(expected O or PREFIX-TYPE, e.g. B-PER); set data.labelled.tag_column (and "
                            "token_column) if the file keeps them elsewhere")
        if prefixed:
            prefix, token = _PREFIX.match(token).groups()
            if not sentence:
                sentence_lang = lang or prefix
        sentence.append((token, tag, number))
    close_sentence()
    if scheme:
        converter.check()
    result.i_after_o = converter.i_after_o
    if not result.tokens:
        raise DataError(f"{path}: no sentences (the file is empty or holds only -DOCSTART- or # lines)")
    if labels is not None:
        check_tags(result, labels)
    return result


def check_tags(parsed: IobFile, labels: Sequence[str]) -> None:
    """Every tag of the file must be in `labels`; the error names the first line of the first
    one that is not."""
    known = set(labels)
    for index, tags in enumerate(parsed.tags):
        for offset, tag in enumerate(tags):
            if tag not in known:
                raise DataError(f"{parsed.path}:{parsed.line_of(index, offset)}: unknown tag {tag!r} (expected one "
                                f"of {', '.join(labels)})")
