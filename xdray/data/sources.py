"""Data sources: labelled NER sets and unlabelled text, all as `datasets.Dataset`s.

Labelled splits have the columns lang (str), tokens (list[str]) and ner_tags (list[int], indices
into the experiment's one shared label list). Unlabelled sets have lang and tokens.
Sources: `conll` (column files: CoNLL-2003, PAN-X, Universal NER), `datasets` (save_to_disk
folders, JSON lines, Parquet), `wikiann` (Hugging Face, or a local copy), `synthetic`. Every
source is read as sentences with IOB2 string tags first; the label list is then resolved
(`resolve_labels`) and the tags indexed, so any label set works and none is built in.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import datasets

from xdray.data.schema import WIKIANN_LABELS, DataConfig, LabelledConfig, UnlabelledConfig
from xdray.data import synthetic
from xdray.data.hf import SPLIT_ALIASES, open_dataset, pick_split, read_dataset
from xdray.data.iob import Columns, IobFile, check_tags, read_iob_file
from xdray.data.tags import entity_types, is_iob2_list, labels_from_tags
from xdray.core.errors import DataError

if TYPE_CHECKING:
    from xdray.config import ExperimentConfig

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
SYNTHETIC_DEFAULT_COUNTS = {"train": 1000, "dev": 200, "test": 200}
WIKIANN_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}
LABELLED_FEATURES = datasets.Features({
    "lang": datasets.Value("string"),
    "tokens": datasets.Sequence(datasets.Value("string")),
    "ner_tags": datasets.Sequence(datasets.Value("int32")),
})
UNLABELLED_FEATURES = datasets.Features({
    "lang": datasets.Value("string"),
    "tokens": datasets.Sequence(datasets.Value("string")),
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


def _cap(rows: list[Any], limit: int, seed: int, tag: str) -> list[Any]:
    """A seeded subsample of `limit` rows in their original order (all rows when limit is 0)."""
    return [rows[i] for i in sample_indices(len(rows), limit, seed, tag)]


def _limit(cfg: LabelledConfig, split: str) -> int:
    return getattr(cfg, f"{split}_per_language")


def _rows_to_dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    return datasets.Dataset.from_list(rows, features=LABELLED_FEATURES)


def _synthetic_parts(cfg: LabelledConfig) -> dict[str, list[IobFile]]:
    unknown = sorted(set(cfg.languages) - set(synthetic.LANGUAGES))
    if unknown:
        raise DataError(f"data.labelled.languages: synthetic data has no {unknown} "
                        f"(available: {', '.join(synthetic.LANGUAGES)})")
    parts: dict[str, list[IobFile]] = {}
    for split in SPLITS:
        count = _limit(cfg, split) or SYNTHETIC_DEFAULT_COUNTS[split]
        for lang in cfg.languages:
            rows = synthetic.generate(lang, split, count, cfg.seed)
            parts.setdefault(split, []).append(IobFile(
                path=Path(f"synthetic/{split}-{lang}"), tokens=[t for t, _ in rows], tags=[g for _, g in rows],
                langs=[lang] * len(rows), first_lines=[i + 1 for i in range(len(rows))], step=0,
                label_order=WIKIANN_LABELS))
    return parts


def _legacy_order(parts: dict[str, list[IobFile]]) -> dict[str, list[IobFile]]:
    """`source: iob` (the older name of conll) keeps WikiANN's label order where the tags fit in
    it, as it had before labels were read from the data: configs that named no labels keep
    their trial keys and the order of their models' outputs."""
    for files in parts.values():
        for part in files:
            part.label_order = WIKIANN_LABELS
    return parts


def _conll_file(cfg: LabelledConfig, path: Path, lang: str) -> IobFile:
    return read_iob_file(path, lang=lang, scheme=cfg.scheme, columns=Columns(cfg.token_column, cfg.tag_column))


def _conll_parts(cfg: LabelledConfig, base: ExperimentConfig) -> dict[str, list[IobFile]]:
    """Column files: one per split (train:, dev:, test:) or a directory by file_pattern."""
    if cfg.split_files:
        lang = cfg.languages[0]
        return {split: [_conll_file(cfg, _existing(base, path, f"data.labelled.{split}"), lang)]
                for split, path in cfg.split_files.items()}
    root = base.resolve_path(cfg.path)
    if not root.is_dir():
        raise DataError(f"data.labelled.path: {root} is not a directory")
    parts: dict[str, list[IobFile]] = {}
    for split in SPLITS:
        for lang in cfg.languages:
            path = root / cfg.file_pattern.format(split=split, lang=lang)
            if not path.exists():
                if split == "test":
                    continue  # test splits are optional (PAN-X in ../shared has none)
                raise DataError(f"data.labelled: missing file {path} (language {lang!r}, split {split!r})")
            parts.setdefault(split, []).append(_conll_file(cfg, path, lang))
    return parts


def _existing(base: ExperimentConfig, path: str, key: str) -> Path:
    resolved = base.resolve_path(path)
    if not resolved.exists():
        raise DataError(f"{key}: {resolved} does not exist")
    return resolved


def _datasets_parts(cfg: LabelledConfig, declared: Sequence[str], base: ExperimentConfig) -> dict[str, list[IobFile]]:
    """A DatasetDict folder (path:) and/or one dataset file or folder per split."""
    lang = cfg.languages[0] if len(cfg.languages) == 1 else None
    sources = {split: (_existing(base, p, f"data.labelled.{split}"), split) for split, p in cfg.split_files.items()}
    if cfg.path:
        folder = _existing(base, cfg.path, "data.labelled.path")
        for split in SPLITS:
            sources.setdefault(split, (folder, "path"))
    parts: dict[str, list[IobFile]] = {}
    for split, (path, key) in sources.items():
        opened = open_dataset(path)
        picked = pick_split(opened, split, path, key)
        if picked is None:
            if split != "test":
                raise DataError(f"data.labelled.{key}: {path} has no {split} split (expected one of "
                                f"{', '.join(SPLIT_ALIASES[split])}; it has {', '.join(opened)})")
            continue
        name, ds = picked
        where = f"{path}[{name}]" if isinstance(opened, datasets.DatasetDict) else str(path)
        parts[split] = [read_dataset(ds, where, lang, cfg.scheme, declared or None)]
    return parts


def _wikiann_parts(cfg: LabelledConfig, base: ExperimentConfig) -> dict[str, list[IobFile]]:
    local = base.resolve_path(cfg.dataset)
    dataset = str(local) if local.is_dir() else cfg.dataset  # a local copy, relative to the experiment file
    parts: dict[str, list[IobFile]] = {}
    for lang in cfg.languages:
        dd = load_wikiann_language(dataset, lang)
        for split, hf_name in WIKIANN_SPLIT_NAMES.items():
            if hf_name in dd:
                parts.setdefault(split, []).append(read_dataset(dd[hf_name], f"wikiann/{lang}/{hf_name}", lang,
                                                                "iob2", None))
    return parts


def source_labels(parts: dict[str, list[IobFile]]) -> tuple[str, ...] | None:
    """The label order the source gives its tags (a ClassLabel's names, synthetic's list) where
    it is IOB2 with O first; None when the order is to come from the tags themselves."""
    order = next((p.label_order for files in parts.values() for p in files if p.label_order), None)
    return order if order and is_iob2_list(order) else None


def resolve_labels(declared: Sequence[str], required: Sequence[str] | None, required_from: str,
                   seen: set[str], preferred: Sequence[str] | None) -> tuple[str, ...]:
    """The experiment's label list. `required` (a fine-tuned checkpoint's labels, in its order)
    wins and must cover the same entity types as the data and data.labels; then data.labels as
    given; then the source's own order where it covers the data; else O and B-/I- of each type
    seen, alphabetically."""
    if required is not None:
        if declared and list(declared) != list(required):  # ids named by data.labels would be renamed
            raise DataError(f"{required_from}: the checkpoint's labels {list(required)} and data.labels "
                            f"{list(declared)} differ; with init: finetuned the checkpoint's id2label is the label "
                            "list: leave data.labels out, or give it in the checkpoint's order")
        theirs = entity_types(required)
        for name, tags in (("the data", seen), ("data.labels", declared)):
            ours = entity_types(tags)
            if tags and ours != theirs:
                raise DataError(f"{required_from}: the checkpoint predicts {list(required)} (types "
                                f"{sorted(theirs)}) but {name} has types {sorted(ours)}: "
                                + "; ".join(part for part in (
                                    f"{name} has {sorted(ours - theirs)}, which the teacher lacks" if ours - theirs else "",
                                    f"the teacher has {sorted(theirs - ours)}, which {name} lacks" if theirs - ours else "")
                                    if part)
                                + " (use init: pretrained to train a new head on these labels)")
        return tuple(required)
    if declared:
        return tuple(declared)
    if preferred and seen <= set(preferred):
        return tuple(preferred)
    return labels_from_tags(seen)


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
                keep = sample_indices(len(members), _limit(cfg, split), cfg.seed, f"{split}/{lang}")
                rows += [{"lang": lang, "tokens": part.tokens[members[k]],
                          "ner_tags": [index[t] for t in part.tags[members[k]]]} for k in keep]
        if rows:
            splits[split] = _rows_to_dataset(rows)
    return splits


def read_labelled_parts(cfg: LabelledConfig, declared: Sequence[str], base: ExperimentConfig) -> dict[str, list[IobFile]]:
    """Every labelled split of the configured source as sentences with IOB2 string tags."""
    if cfg.source == "iob":
        return _legacy_order(_conll_parts(cfg, base))
    if cfg.source == "conll":
        return _conll_parts(cfg, base)
    if cfg.source == "datasets":
        return _datasets_parts(cfg, declared, base)
    if cfg.source == "wikiann":
        return _wikiann_parts(cfg, base)
    return _synthetic_parts(cfg)


def load_wikiann_language(dataset: str, lang: str) -> datasets.DatasetDict:
    """WikiANN for one language: `datasets.load_dataset(dataset, lang)` from the hub, or
    `load_from_disk(dataset/lang)` when `dataset` is a local directory (offline copies, tests)."""
    local = Path(dataset).expanduser()
    try:
        if local.is_dir():
            return datasets.load_from_disk(str(local / lang))
        return datasets.load_dataset(dataset, lang)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        raise DataError(f"data.labelled.dataset: cannot load WikiANN {dataset!r} language {lang!r}: {err}") from None


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
    summary = {}
    for name, ds in splits.items():
        per_lang: dict[str, int] = {}
        for lang in ds["lang"]:
            per_lang[lang] = per_lang.get(lang, 0) + 1
        summary[name] = {"sentences": len(ds), "per_language": dict(sorted(per_lang.items()))}
    return summary


def load_labelled(cfg: ExperimentConfig, required_labels: Sequence[str] | None = None,
                  required_from: str = "teacher.model") -> LabelledData:
    """Load the experiment's labelled splits from its configured source, tags as indices into
    the resolved label list (see `resolve_labels`; `required_labels` is a fine-tuned teacher's)."""
    data: DataConfig = cfg.data
    source = data.labelled
    parts = read_labelled_parts(source, data.labels, cfg)
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


def _unlabelled_rows(src: UnlabelledConfig, cfg: ExperimentConfig, labelled: LabelledData) -> list[dict]:
    if src.source == "labelled":
        if src.split not in labelled.splits:
            raise DataError(f"data.unlabelled: split {src.split!r} is not in the labelled data "
                            f"(have {sorted(labelled.splits)})")
        ds = labelled.splits[src.split]
        return [{"lang": l, "tokens": t} for l, t in zip(ds["lang"], ds["tokens"])]
    pattern = str(cfg.resolve_path(src.path))
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


def check_unlabelled(cfg: ExperimentConfig, labelled: LabelledData) -> None:
    """Read every unlabelled source, raising DataError on a bad one."""
    for src in cfg.data.unlabelled:
        _unlabelled_rows(src, cfg, labelled)


def load_unlabelled(cfg: ExperimentConfig, labelled: LabelledData) -> datasets.Dataset:
    """All unlabelled sources of the experiment, concatenated in config order."""
    rows: list[dict[str, Any]] = []
    for i, src in enumerate(cfg.data.unlabelled):
        part = _unlabelled_rows(src, cfg, labelled)
        rows += _cap(part, src.max_sentences, cfg.seed, f"unlabelled/{i}")
    return datasets.Dataset.from_list(rows, features=UNLABELLED_FEATURES)
