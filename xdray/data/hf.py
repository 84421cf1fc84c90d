"""Labelled NER sets in the formats of the Hugging Face `datasets` library.

A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk` (splits train /
validation or dev / test), or a JSON lines or Parquet file, each row a sentence with `tokens`
(a list of words) and `ner_tags`: ClassLabel ids (their names are the tags), strings, or plain
integers named by `data.labels` in id order. A `lang` column, where present, gives each row's
language. Tags are converted to IOB2 from the declared scheme like a column file's; errors name
the file and the row (`file:ROW`, counting from 1, which is the line of a JSON lines file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import datasets

from xdray.core.errors import DataError
from xdray.data.iob import IobFile
from xdray.data.tags import TagConverter

FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
SPLIT_ALIASES = {"train": ("train",), "dev": ("dev", "validation", "valid"), "test": ("test",)}


def open_dataset(path: Path) -> datasets.Dataset | datasets.DatasetDict:
    try:
        if path.is_dir():
            return datasets.load_from_disk(str(path))
        if path.suffix.lower() == ".parquet":
            return datasets.Dataset.from_parquet(str(path))
        return datasets.Dataset.from_json(str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except Exception as err:  # datasets raises many kinds for a damaged or foreign file
        raise DataError(f"{path}: cannot read as a dataset ({type(err).__name__}: {err})") from None


def pick_split(opened: datasets.Dataset | datasets.DatasetDict, split: str, path: Path,
               key: str) -> tuple[str, datasets.Dataset] | None:
    """(its name, the split) of a DatasetDict by xdray's name or its aliases (dev = validation),
    None where it has none; a plain Dataset is the split its key (train:, dev:, test:) names,
    and is refused as `path:`, which must hold the splits."""
    if isinstance(opened, datasets.Dataset):
        if key == "path":
            raise DataError(f"data.labelled.path: {path} holds one Dataset, not a DatasetDict of splits; name it "
                            "as data.labelled.train (and give dev: and test: their own)")
        return split, opened
    for name in SPLIT_ALIASES[split]:
        if name in opened:
            return name, opened[name]
    return None


def tag_names(ds: datasets.Dataset, where: str, labels: Sequence[str] | None) -> list[str] | None:
    """The names of integer tags: the ClassLabel's, or `labels` (data.labels, in id order);
    None when the tags are strings."""
    feature = ds.features["ner_tags"]
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    dtype = getattr(inner, "dtype", "")
    if dtype in ("string", "large_string"):  # Polars and pyarrow write either
        return None
    if not labels:
        raise DataError(f"{where}: ner_tags are integers with no ClassLabel names; list the tag names in "
                        "data.labels, in the order of their ids")
    return list(labels)


def read_dataset(ds: datasets.Dataset, where: str, lang: str | None, scheme: str,
                 labels: Sequence[str] | None) -> IobFile:
    """Rows of a dataset as sentences with IOB2 string tags (IobFile, one row a sentence); the
    language from a `lang` column, else `lang` (None: the data must have the column)."""
    missing = [c for c in ("tokens", "ner_tags") if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: no column {', '.join(missing)} (expected tokens and ner_tags; "
                        f"found {', '.join(ds.column_names)})")
    names = tag_names(ds, where, labels)
    converter = TagConverter(scheme, where)
    out = IobFile(path=Path(where), step=0, label_order=tuple(names) if names else None)
    langs = ds["lang"] if "lang" in ds.column_names else None
    if langs is None and lang is None:
        raise DataError(f"{where}: no lang column, so name the data's one language in data.labelled.languages "
                        "(e.g. [en])")
    for row, (tokens, tags) in enumerate(zip(ds["tokens"], ds["ner_tags"])):
        number = row + 1
        if len(tokens) != len(tags):
            raise DataError(f"{where}:{number}: {len(tokens)} tokens but {len(tags)} ner_tags")
        if not tokens:
            continue
        if names is not None:
            bad = next((t for t in tags if not 0 <= t < len(names)), None)
            if bad is not None:
                raise DataError(f"{where}:{number}: tag id {bad} is outside the {len(names)} tag names")
            tags = [names[t] for t in tags]
        out.tokens.append([str(t) for t in tokens])
        out.tags.append(converter.convert(tags, [number] * len(tags)))
        out.langs.append(langs[row] if langs else lang)
        out.first_lines.append(number)
    converter.check()
    out.i_after_o = converter.i_after_o
    if not out.tokens:
        raise DataError(f"{where}: no sentences")
    return out
