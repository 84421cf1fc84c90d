"""Data sources: labelled NER sets and unlabelled text, all as `datasets.Dataset`s.

Labelled splits have the columns lang (str), tokens (list[str]) and ner_tags (list[int], indices
into the experiment's one shared label list). Unlabelled sets have lang and tokens.
Sources: `iob` (local CoNLL / PAN-X files), `wikiann` (Hugging Face, or a local copy), `synthetic`.
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

from xdray.data.schema import DataConfig, LabelledConfig, UnlabelledConfig
from xdray.data import synthetic
from xdray.data.iob import read_iob_file
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


def _load_iob(cfg: LabelledConfig, labels: Sequence[str], base: ExperimentConfig) -> tuple[dict, dict]:
    root = base.resolve_path(cfg.path)
    if not root.is_dir():
        raise DataError(f"data.labelled.path: {root} is not a directory")
    splits, i_after_o = {}, 0
    for split in SPLITS:
        rows = []
        for lang in cfg.languages:
            path = root / cfg.file_pattern.format(split=split, lang=lang)
            if not path.exists():
                if split == "test":
                    continue  # test splits are optional (PAN-X in ../shared has none)
                raise DataError(f"data.labelled: missing file {path} (language {lang!r}, split {split!r})")
            parsed = read_iob_file(path, labels, lang=lang)
            i_after_o += parsed.i_after_o
            pairs = list(zip(parsed.tokens, parsed.tags))
            pairs = _cap(pairs, _limit(cfg, split), cfg.seed, f"{split}/{lang}")
            rows += [{"lang": lang, "tokens": t, "ner_tags": g} for t, g in pairs]
        if rows:
            splits[split] = _rows_to_dataset(rows)
    return splits, {"i_after_o": i_after_o}


def wikiann_rows(split: datasets.Dataset, lang: str, labels: Sequence[str]) -> list[dict[str, Any]]:
    """Convert one language split of the HF WikiANN dataset (tokens, ner_tags as ClassLabel ids,
    langs, spans) to xdray rows, mapping tag names onto the experiment's label list."""
    names = split.features["ner_tags"].feature.names
    index = {tag: i for i, tag in enumerate(labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(f"wikiann/{lang}: tags {unknown} are not in data.labels ({', '.join(labels)})")
    remap = [index[name] for name in names]
    return [{"lang": lang, "tokens": list(tokens), "ner_tags": [remap[t] for t in tags]}
            for tokens, tags in zip(split["tokens"], split["ner_tags"])]


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


def _load_wikiann(cfg: LabelledConfig, labels: Sequence[str]) -> tuple[dict, dict]:
    per_split: dict[str, list] = {s: [] for s in SPLITS}
    for lang in cfg.languages:
        dd = load_wikiann_language(cfg.dataset, lang)
        for split, hf_name in WIKIANN_SPLIT_NAMES.items():
            if hf_name in dd:
                rows = _cap(wikiann_rows(dd[hf_name], lang, labels), _limit(cfg, split), cfg.seed, f"{split}/{lang}")
                per_split[split] += rows
    return {s: _rows_to_dataset(r) for s, r in per_split.items() if r}, {}


def _load_synthetic(cfg: LabelledConfig, labels: Sequence[str]) -> tuple[dict, dict]:
    unknown = sorted(set(cfg.languages) - set(synthetic.LANGUAGES))
    if unknown:
        raise DataError(f"data.labelled.languages: synthetic data has no {unknown} "
                        f"(available: {', '.join(synthetic.LANGUAGES)})")
    index = {tag: i for i, tag in enumerate(labels)}
    splits = {}
    for split in SPLITS:
        count = _limit(cfg, split) or SYNTHETIC_DEFAULT_COUNTS[split]
        rows = []
        for lang in cfg.languages:
            for tokens, tags in synthetic.generate(lang, split, count, cfg.seed):
                try:
                    rows.append({"lang": lang, "tokens": tokens, "ner_tags": [index[t] for t in tags]})
                except KeyError as err:
                    raise DataError(f"data.labels: synthetic data uses tag {err.args[0]!r}, missing "
                                    "from data.labels") from None
        splits[split] = _rows_to_dataset(rows)
    return splits, {}


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


def load_labelled(cfg: ExperimentConfig) -> LabelledData:
    """Load the experiment's labelled splits from its configured source."""
    data: DataConfig = cfg.data
    source = data.labelled
    if source.source == "iob":
        splits, extra = _load_iob(source, data.labels, cfg)
    elif source.source == "wikiann":
        splits, extra = _load_wikiann(source, data.labels)
    else:
        splits, extra = _load_synthetic(source, data.labels)
    for required in ("train", "dev"):
        if required not in splits:
            raise DataError(f"data.labelled: the {source.source} source yielded no {required!r} sentences")
    summary = _summarise(splits)
    for split, info in summary.items():
        missing = sorted(set(source.languages) - set(info["per_language"]))
        if missing and split != "test":
            raise DataError(f"data.labelled: split {split!r} has no sentences for {missing}")
    if extra.get("i_after_o"):
        log.info("accepted %d I- tags that follow O or another type (as WikiANN has them)", extra["i_after_o"])
    return LabelledData(labels=tuple(data.labels), splits=splits, fingerprint=dataset_fingerprint(data.labels, splits))


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
        if src.source == "iob":
            parsed = read_iob_file(path, cfg.data.labels)
            rows += [{"lang": lang, "tokens": tokens} for lang, tokens in zip(parsed.langs, parsed.tokens)]
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
