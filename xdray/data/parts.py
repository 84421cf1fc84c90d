"""Each labelled source read as sentences with IOB2 string tags (`IobFile` parts by split): `conll`
(and its older name `iob`), `datasets`, `wikiann` and `synthetic`. The label list is resolved and
the tags indexed afterwards (`xdray.data.labelled`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import datasets

from xdray.core.errors import DataError
from xdray.core.files import resolve_path
from xdray.data import synthetic
from xdray.data.hf import SPLIT_ALIASES, open_dataset, pick_split, read_dataset
from xdray.data.iob import Columns, IobFile, read_iob_file
from xdray.data.schema import WIKIANN_LABELS, LabelledConfig

SPLITS = ("train", "dev", "test")
SYNTHETIC_DEFAULT_COUNTS = {"train": 1000, "dev": 200, "test": 200}
WIKIANN_SPLIT_NAMES = {"train": "train", "dev": "validation", "test": "test"}


def split_limit(cfg: LabelledConfig, split: str) -> int:
    """The configured {split}_per_language (0: no limit)."""
    return getattr(cfg, f"{split}_per_language")


def _synthetic_parts(cfg: LabelledConfig) -> dict[str, list[IobFile]]:
    unknown = sorted(set(cfg.languages) - set(synthetic.LANGUAGES))
    if unknown:
        raise DataError(f"data.labelled.languages: synthetic data has no {unknown} "
                        f"(available: {', '.join(synthetic.LANGUAGES)})")
    parts: dict[str, list[IobFile]] = {}
    for split in SPLITS:
        count = split_limit(cfg, split) or SYNTHETIC_DEFAULT_COUNTS[split]
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


def _conll_parts(cfg: LabelledConfig, base_dir: str | Path) -> dict[str, list[IobFile]]:
    """Column files: one per split (train:, dev:, test:) or a directory by file_pattern."""
    if cfg.split_files:
        lang = cfg.languages[0]
        return {split: [_conll_file(cfg, _existing(base_dir, path, f"data.labelled.{split}"), lang)]
                for split, path in cfg.split_files.items()}
    root = resolve_path(base_dir, cfg.path)
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


def _existing(base_dir: str | Path, path: str, key: str) -> Path:
    resolved = resolve_path(base_dir, path)
    if not resolved.exists():
        raise DataError(f"{key}: {resolved} does not exist")
    return resolved


def _datasets_parts(cfg: LabelledConfig, declared: Sequence[str], base_dir: str | Path) -> dict[str, list[IobFile]]:
    """A DatasetDict folder (path:) and/or one dataset file or folder per split."""
    lang = cfg.languages[0] if len(cfg.languages) == 1 else None
    sources = {split: (_existing(base_dir, p, f"data.labelled.{split}"), split) for split, p in cfg.split_files.items()}
    if cfg.path:
        folder = _existing(base_dir, cfg.path, "data.labelled.path")
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


def _wikiann_parts(cfg: LabelledConfig, base_dir: str | Path) -> dict[str, list[IobFile]]:
    local = resolve_path(base_dir, cfg.dataset)
    dataset = str(local) if local.is_dir() else cfg.dataset  # a local copy, relative to the experiment file
    parts: dict[str, list[IobFile]] = {}
    for lang in cfg.languages:
        dd = load_wikiann_language(dataset, lang)
        for split, hf_name in WIKIANN_SPLIT_NAMES.items():
            if hf_name in dd:
                parts.setdefault(split, []).append(read_dataset(dd[hf_name], f"wikiann/{lang}/{hf_name}", lang,
                                                                "iob2", None))
    return parts


def read_labelled_parts(cfg: LabelledConfig, declared: Sequence[str], base_dir: str | Path) -> dict[str, list[IobFile]]:
    """Every labelled split of the configured source as sentences with IOB2 string tags."""
    if cfg.source == "iob":
        return _legacy_order(_conll_parts(cfg, base_dir))
    if cfg.source == "conll":
        return _conll_parts(cfg, base_dir)
    if cfg.source == "datasets":
        return _datasets_parts(cfg, declared, base_dir)
    if cfg.source == "wikiann":
        return _wikiann_parts(cfg, base_dir)
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
