"""Unlabelled text for the transfer set: a labelled split's sentences, text files (one sentence
a line) or column files, each source capped at its max_sentences."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, Sequence

import datasets

from xdray.core.errors import DataError
from xdray.core.files import resolve_path
from xdray.data.iob import Columns, read_iob_file
from xdray.data.labelled import LabelledData, sample_indices
from xdray.data.schema import UnlabelledConfig

UNLABELLED_FEATURES = datasets.Features({
    "lang": datasets.Value("string"),
    "tokens": datasets.Sequence(datasets.Value("string")),
})


def _cap(rows: list[Any], limit: int, seed: int, tag: str) -> list[Any]:
    """A seeded subsample of `limit` rows in their original order (all rows when limit is 0)."""
    return [rows[i] for i in sample_indices(len(rows), limit, seed, tag)]


def read_text_file(path: Path, lang: str) -> list[dict[str, Any]]:
    """One sentence per line, whitespace-tokenised; blank lines skipped; errors name file:line."""
    rows = []
    try:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8").lstrip("\ufeff").strip()
                except UnicodeDecodeError as err:
                    raise DataError(f"{path}:{number}: invalid UTF-8 at byte {err.start}; files must be UTF-8") from None
                if line:
                    rows.append({"lang": lang, "tokens": line.split()})
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    return rows


def _unlabelled_rows(src: UnlabelledConfig, base_dir: str | Path, labelled: LabelledData) -> list[dict]:
    if src.source == "labelled":
        if src.split not in labelled.splits:
            raise DataError(f"data.unlabelled: split {src.split!r} is not in the labelled data "
                            f"(have {sorted(labelled.splits)})")
        ds = labelled.splits[src.split]
        return [{"lang": l, "tokens": t} for l, t in zip(ds["lang"], ds["tokens"])]
    pattern = str(resolve_path(base_dir, src.path))
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise DataError(f"data.unlabelled: no file matches {pattern}")
    rows = []
    for path in paths:
        if src.source in ("conll", "iob"):
            parsed = read_iob_file(path, scheme=None, columns=Columns(src.token_column, -1), require_lang=False)
            rows += [{"lang": src.lang if lang == "und" else lang, "tokens": tokens}
                     for lang, tokens in zip(parsed.langs, parsed.tokens)]
        else:
            rows += read_text_file(Path(path), src.lang)
    if not rows:
        raise DataError(f"data.unlabelled: {pattern} holds no sentences")
    return rows


def check_unlabelled(sources: Sequence[UnlabelledConfig], base_dir: str | Path, labelled: LabelledData) -> None:
    """Read every unlabelled source, raising DataError on a bad one."""
    for src in sources:
        _unlabelled_rows(src, base_dir, labelled)


def load_unlabelled(sources: Sequence[UnlabelledConfig], base_dir: str | Path, seed: int,
                    labelled: LabelledData) -> datasets.Dataset:
    """The unlabelled sources (data.unlabelled; relative paths against `base_dir`), concatenated
    in config order, each capped at its max_sentences with a subsample seeded by `seed`."""
    rows: list[dict[str, Any]] = []
    for i, src in enumerate(sources):
        part = _unlabelled_rows(src, base_dir, labelled)
        rows += _cap(part, src.max_sentences, seed, f"unlabelled/{i}")
    return datasets.Dataset.from_list(rows, features=UNLABELLED_FEATURES)
