"""Tagging schemes and label lists: every labelled source is converted to IOB2 on read.

Schemes (`data.labelled.scheme`):
- iob2 (default; PAN-X, WikiANN, Hugging Face sets): every entity begins with B-. An I- tag after O
  or another type is accepted as it stands (WikiANN has a few); seqeval reads it as a beginning.
- iob1 (the original CoNLL-2003 release): an entity begins with I- unless it directly follows one
  of the same type, where B- marks the boundary. Converted: an I- that begins an entity becomes B-.
- bioes (also read as BILOU: L- as E-, U- as S-): S- single-word entities, E- last words.
  Converted: S- becomes B-, E- becomes I-.

A file whose tags contradict the declared scheme is an error that names the scheme it looks like
(`guess_scheme`), so a CoNLL-2003 file read as iob2 fails with "looks like iob1" instead of
training on entities that all begin with I-.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from xdray.core.errors import DataError

SCHEMES = ("iob2", "iob1", "bioes")
_PREFIXES = {"iob2": ("B", "I"), "iob1": ("B", "I"), "bioes": ("B", "I", "E", "S")}
_BILOU = {"L": "E", "U": "S"}


def split_tag(tag: str) -> tuple[str, str] | None:
    """("B", "PER") for "B-PER", ("O", "") for "O", None when the tag is neither."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or len(prefix) != 1 or not prefix.isalpha():
        return None
    return prefix.upper(), kind


@dataclass
class SchemeStats:
    """What a file's tags say about its scheme: how its entities begin, whether E-/S- appear."""

    starts_b: int = 0  # entities that begin with B- after O or another type
    starts_i: int = 0  # entities that begin with I- after O or another type
    e_or_s: int = 0
    first_line: dict[str, int] = field(default_factory=dict)  # kind of evidence -> first line

    def note(self, what: str, line: int) -> None:
        self.first_line.setdefault(what, line)


def guess_scheme(stats: SchemeStats) -> str:
    if stats.e_or_s:
        return "bioes"
    return "iob1" if stats.starts_i > stats.starts_b else "iob2"


@dataclass
class TagConverter:
    """Converts one source's sentences to IOB2, sentence by sentence, collecting the evidence
    that `check` weighs against the declared scheme. `where` names the file in messages."""

    scheme: str
    where: str
    stats: SchemeStats = field(default_factory=SchemeStats)
    i_after_o: int = 0  # iob2: I- tags that begin an entity, kept as they are (WikiANN has them)

    def convert(self, tags: Sequence[str], lines: Sequence[int]) -> list[str]:
        """IOB2 tags for one sentence; `lines[k]` is where tag k is (its line in a column file,
        its row in a dataset), for messages."""
        out: list[str] = []
        previous = ""  # type of the previous word ("" after O)
        for tag, line in zip(tags, lines):
            parts = split_tag(tag)
            if parts is None:
                raise DataError(f"{self.where}:{line}: tag {tag!r} is not O or PREFIX-TYPE "
                                "(expected e.g. B-PER, I-LOC)")
            prefix, kind = parts
            prefix = _BILOU.get(prefix, prefix) if self.scheme == "bioes" else prefix
            if prefix not in _PREFIXES[self.scheme] + ("O",):
                if prefix in ("E", "S", "L", "U"):
                    self.stats.e_or_s += 1
                    self.stats.note("e_or_s", line)
                    raise self._contradiction()
                raise DataError(f"{self.where}:{line}: tag {tag!r} has prefix {prefix}-, which the {self.scheme} "
                                f"scheme does not use (expected {', '.join(p + '-' for p in _PREFIXES[self.scheme])})")
            out.append(self._to_iob2(prefix, kind, previous, line))
            previous = kind if prefix != "O" else ""
        return out

    def _to_iob2(self, prefix: str, kind: str, previous: str, line: int) -> str:
        if prefix == "O":
            return "O"
        begins = kind != previous
        if prefix in ("E", "S"):
            self.stats.e_or_s += 1
        if begins and prefix == "B":
            self.stats.starts_b += 1
            self.stats.note("starts_b", line)
        elif begins and prefix == "I":
            self.stats.starts_i += 1
            self.stats.note("starts_i", line)
        if self.scheme == "bioes":
            return ("B-" if prefix in ("B", "S") else "I-") + kind
        if self.scheme == "iob1":
            return ("B-" if begins or prefix == "B" else "I-") + kind
        if begins and prefix == "I":
            self.i_after_o += 1
        return f"{prefix}-{kind}"

    def _contradiction(self) -> DataError:
        looks = guess_scheme(self.stats)
        evidence = {
            "bioes": ("E-/S- tags", "e_or_s"),
            "iob1": (f"{self.stats.starts_i} of {self.stats.starts_i + self.stats.starts_b} entities begin "
                     "with I-", "starts_i"),
            "iob2": (f"{self.stats.starts_b} of {self.stats.starts_i + self.stats.starts_b} entities begin "
                     "with B- after O", "starts_b"),
        }[looks]
        line = self.stats.first_line.get(evidence[1])
        at = f" (first at line {line})" if line else ""
        return DataError(f"{self.where}: the tags look like {looks}, not the declared {self.scheme}: "
                         f"{evidence[0]}{at}; set data.labelled.scheme: {looks}")

    def check(self) -> None:
        """After the whole source: raise when its tags contradict the declared scheme."""
        s = self.stats
        entities = s.starts_b + s.starts_i
        if self.scheme == "iob2" and s.starts_i > s.starts_b:
            raise self._contradiction()
        if self.scheme == "iob1" and s.starts_b > s.starts_i:
            raise self._contradiction()
        if self.scheme == "bioes" and entities and not s.e_or_s:
            raise self._contradiction()


def labels_from_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The label list for IOB2 tags seen in the data: O, then B- and I- of every entity type in
    alphabetical order (so the list does not depend on the order of files or sentences)."""
    kinds = sorted({tag[2:] for tag in tags if tag != "O"})
    return ("O",) + tuple(f"{p}-{kind}" for kind in kinds for p in ("B", "I"))


def is_iob2_list(labels: Sequence[str]) -> bool:
    """O first, then only B-TYPE / I-TYPE tags (what data.labels requires, in data.schema)."""
    return bool(labels) and labels[0] == "O" and all(t[:2] in ("B-", "I-") and len(t) > 2 for t in labels[1:])


def entity_types(labels: Iterable[str]) -> set[str]:
    return {tag[2:] for tag in labels if tag != "O"}
