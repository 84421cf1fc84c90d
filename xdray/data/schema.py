"""Config schema of the data stage: labelled NER sets and unlabelled text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from xdray.core.loader import require

WIKIANN_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


@dataclass(frozen=True)
class LabelledConfig:
    """Where the labelled NER sentences come from."""

    # conll: CoNLL-style column files (`iob` is its older name); datasets: a Hugging Face dataset
    # saved with save_to_disk, or JSON lines / Parquet files with tokens and ner_tags; wikiann:
    # the WikiANN dataset by language (hub id, or a local copy); synthetic: generated offline.
    source: Literal["synthetic", "conll", "iob", "datasets", "wikiann"] = "synthetic"
    languages: tuple[str, ...] = ("en", "de", "es", "ru", "el", "hi")
    # conll / datasets, one file (or save_to_disk folder) per split, one language for all of them
    # (the single entry of `languages`, unless a datasets row has a `lang` column). Relative paths
    # resolve against the experiment file. dev may be left out where `path` is a DatasetDict.
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    # conll: a directory holding one file per split and language ({split} and {lang} filled in);
    # datasets: a DatasetDict folder (splits train, validation or dev, test).
    path: str | None = None
    file_pattern: str = "{split}-{lang}.tsv"
    scheme: Literal["iob2", "iob1", "bioes"] = "iob2"  # converted to IOB2 on read
    token_column: int = 0  # conll: Python indices, negative from the end
    tag_column: int = -1
    # wikiann: the Hugging Face dataset id (or a local copy saved with save_to_disk).
    dataset: str = "unimelb-nlp/wikiann"
    # Sentences per language and split: a cap for files and datasets (0 = all), the count for
    # synthetic (0 = 1000 train, 200 dev, 200 test).
    train_per_language: int = 0
    dev_per_language: int = 0
    test_per_language: int = 0
    seed: int = 13  # synthetic generator and subsampling

    @property
    def split_files(self) -> dict[str, str]:
        """The splits named one file (or folder) each: {"train": PATH, ...}."""
        return {s: getattr(self, s) for s in ("train", "dev", "test") if getattr(self, s)}

    def __post_init__(self) -> None:
        require(len(self.languages) > 0, "languages", "must list at least one language")
        require(len(set(self.languages)) == len(self.languages), "languages", "has duplicates")
        for key in ("train_per_language", "dev_per_language", "test_per_language"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        files = self.split_files
        if self.source in ("conll", "iob", "datasets"):
            require(bool(files) or bool(self.path), "path",
                    f"source '{self.source}' needs train: and dev: files, or path:")
        if files:
            require(self.source in ("conll", "iob", "datasets"), next(iter(files)),
                    f"names a file, which source '{self.source}' does not read (use conll or datasets)")
            require(self.source == "datasets" and bool(self.path) or "train" in files, "train",
                    "is required when the splits are named one file each")
            require(self.source == "datasets" or len(self.languages) == 1, "languages",  # datasets: or a lang column
                    f"must name the one language of the split files (e.g. [en]), got {list(self.languages)}")
        elif self.source in ("conll", "iob"):
            require("{split}" in self.file_pattern, "file_pattern", "must contain {split}")
            require("{lang}" in self.file_pattern or len(self.languages) == 1, "file_pattern",
                    "must contain {lang} when there is more than one language")
        require(self.token_column != self.tag_column, "tag_column", "must differ from token_column")


@dataclass(frozen=True)
class UnlabelledConfig:
    """One source of unlabelled text for the transfer set."""

    # labelled: a split of the labelled data, labels dropped; text: one sentence per line,
    # whitespace-tokenised; conll (or iob): column files (e.g. other languages' PAN-X train
    # files), labels dropped, language from a token prefix or the file name, else `lang`.
    source: Literal["text", "labelled", "conll", "iob"] = "labelled"
    path: str | None = None  # text / conll: a file or glob
    lang: str = "und"  # text: language of those files; conll: where the file name has none
    token_column: int = 0  # conll: the column of the token
    split: str = "train"  # labelled: which split of the labelled data to reuse without labels
    max_sentences: int = 0  # 0 = all

    def __post_init__(self) -> None:
        require(self.source == "labelled" or bool(self.path), "path", f"is required for source '{self.source}'")
        require(self.max_sentences >= 0, "max_sentences", "must be >= 0")



@dataclass(frozen=True)
class DataConfig:
    # IOB2 tags, "O" first. Empty: read from the data (O, then B-/I- of each type in alphabetical
    # order), or from the checkpoint's id2label where teacher.init is finetuned. Given, it fixes
    # the order of the teacher's and student's outputs, and a tag outside it is an error.
    labels: tuple[str, ...] = ()
    max_length: int = 32  # WordPiece tokens, specials included (the paper's setting)
    labelled: LabelledConfig = field(default_factory=LabelledConfig)
    unlabelled: tuple[UnlabelledConfig, ...] = (UnlabelledConfig(),)

    def __post_init__(self) -> None:
        require(not self.labels or self.labels[0] == "O", "labels", "must start with 'O'")
        require(len(set(self.labels)) == len(self.labels), "labels", "has duplicates")
        for tag in self.labels[1:]:
            require(tag[:2] in ("B-", "I-") and len(tag) > 2, "labels",
                    f"tag {tag!r} is not IOB2 (expected B-TYPE or I-TYPE)")
        require(8 <= self.max_length <= 4096, "max_length", f"must be in [8, 4096], got {self.max_length}")
