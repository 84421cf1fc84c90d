"""The labelled splits of an experiment: its source read (`xdray.data.parts`), the label list
resolved (`xdray.data.labels`), the tags indexed and each language capped, and a fingerprint."""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import datasets

from xdray.core.errors import DataError
from xdray.data.iob import IobFile, check_tags
from xdray.data.labels import resolve_labels, source_labels
from xdray.data.parts import read_labelled_parts, split_limit
from xdray.data.schema import DataConfig, LabelledConfig

log = logging.getLogger(__name__)

LABELLED_FEATURES = datasets.Features({
    "lang": datasets.Value("string"),
    "tokens": datasets.Sequence(datasets.Value("string")),
    "ner_tags": datasets.Sequence(datasets.Value("int32")),
})


@dataclass
class LabelledData:
    """The labelled splits of an experiment (train and dev always, test where the source has it)."""

    labels: tuple[str, ...]
    splits: dict[str, datasets.Dataset]
    fingerprint: str = ""

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.splits["train"]["lang"]))


def sample_indices(n: int, limit: int, seed: int, tag: str) -> list[int]:
    """Indices of a seeded subsample of `limit` out of `n`, in their original order (all of them
    when limit is 0 or at least n). The same (seed, tag) always picks the same rows."""
    if limit <= 0 or n <= limit:
        return list(range(n))
    return sorted(random.Random(f"{seed}/{tag}").sample(range(n), limit))


def _rows_to_dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows, features=LABELLED_FEATURES)


def _index_parts(parts: dict[str, list[IobFile]], labels: Sequence[str], cfg: LabelledConfig) -> dict[str, datasets.Dataset]:
    """Rows with tag ids, each language of each part capped at {split}_per_language."""
    index = {tag: i for i, tag in enumerate(labels)}
    splits = {}
    for split, files in parts.items():
        rows = []
        for part in files:
            check_tags(part, labels)
            by_lang: dict[str, list[int]] = {}
            for i, lang in enumerate(part.langs):
                by_lang.setdefault(lang, []).append(i)
            for lang, members in by_lang.items():
                keep = sample_indices(len(members), split_limit(cfg, split), cfg.seed, f"{split}/{lang}")
                rows += [{"lang": lang, "tokens": part.tokens[members[k]],
                          "ner_tags": [index[t] for t in part.tags[members[k]]]} for k in keep]
        if rows:
            splits[split] = _rows_to_dataset(rows)
    return splits


def dataset_fingerprint(labels: Sequence[str], splits: dict[str, datasets.Dataset]) -> str:
    """sha256 over the label list and every row: equal data gives an equal fingerprint."""
    digest = hashlib.sha256(json.dumps(list(labels)).encode())
    for name in sorted(splits):
        digest.update(name.encode())
        table = splits[name].with_format("arrow")[:]
        for column in table.column_names:
            digest.update(column.encode())
            for chunk in table.column(column).chunks:
                digest.update(json.dumps(chunk.to_pylist(), ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _summarise(splits: dict[str, datasets.Dataset]) -> dict[str, Any]:
    return {name: {"sentences": len(ds), "per_language": dict(sorted(Counter(ds["lang"]).items()))}
            for name, ds in splits.items()}


def load_labelled(data: DataConfig, base_dir: str | Path, required_labels: Sequence[str] | None = None,
                  required_from: str = "teacher.model") -> LabelledData:
    """Load the labelled splits from their configured source (relative paths against `base_dir`,
    the experiment file's folder), tags as indices into the resolved label list (see
    `resolve_labels`; `required_labels` is a fine-tuned teacher's)."""
    source = data.labelled
    parts = read_labelled_parts(source, data.labels, base_dir)
    for required in ("train", "dev"):
        if required not in parts:
            raise DataError(f"data.labelled: the {source.source} source yielded no {required!r} sentences")
    seen = {tag for files in parts.values() for part in files for tags in part.tags for tag in tags}
    labels = resolve_labels(data.labels, required_labels, required_from, seen, source_labels(parts))
    splits = _index_parts(parts, labels, source)
    summary = _summarise(splits)
    if source.source != "datasets" and not source.split_files:
        for split, info in summary.items():
            missing = sorted(set(source.languages) - set(info["per_language"]))
            if missing and split != "test":
                raise DataError(f"data.labelled: split {split!r} has no sentences for {missing}")
    i_after_o = sum(part.i_after_o for files in parts.values() for part in files)
    if i_after_o:
        log.info("accepted %d I- tags that begin an entity (as WikiANN has them)", i_after_o)
    return LabelledData(labels=labels, splits=splits, fingerprint=dataset_fingerprint(labels, splits))
