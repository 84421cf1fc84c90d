"""Config schema of the data stage: labelled NER sets and unlabelled text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from xdray.core.loader import require

WIKIANN_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


@dataclass(frozen=True)
class LabelledConfig:
    """Where the labelled NER sentences come from."""

    source: Literal["synthetic", "iob", "wikiann"] = "synthetic"
    languages: tuple[str, ...] = ("en", "de", "es", "ru", "el", "hi")
    # iob: a directory holding one file per split and language; {split} and {lang} are filled in.
    path: str | None = None
    file_pattern: str = "{split}-{lang}.tsv"
    # wikiann: the Hugging Face dataset id (or a local copy saved with save_to_disk).
    dataset: str = "unimelb-nlp/wikiann"
    # Sentences per language and split: a cap for iob/wikiann (0 = all), the count for synthetic
    # (0 = 1000 train, 200 dev, 200 test).
    train_per_language: int = 0
    dev_per_language: int = 0
    test_per_language: int = 0
    seed: int = 13  # synthetic generator and subsampling

    def __post_init__(self) -> None:
        require(len(self.languages) > 0, "languages", "must list at least one language")
        require(len(set(self.languages)) == len(self.languages), "languages", "has duplicates")
        for key in ("train_per_language", "dev_per_language", "test_per_language"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        require(self.source != "iob" or bool(self.path), "path", "is required when source is 'iob'")
        require("{lang}" in self.file_pattern and "{split}" in self.file_pattern, "file_pattern",
                "must contain {split} and {lang}")



@dataclass(frozen=True)
class UnlabelledConfig:
    """One source of unlabelled text for the transfer set."""

    # labelled: a split of the labelled data, labels dropped; text: one sentence per line,
    # whitespace-tokenised; iob: labelled files in the iob format (e.g. other languages' PAN-X
    # train files), labels dropped, language from the file name.
    source: Literal["text", "labelled", "iob"] = "labelled"
    path: str | None = None  # text / iob: a file or glob
    lang: str = "und"  # text: language of those files
    split: str = "train"  # labelled: which split of the labelled data to reuse without labels
    max_sentences: int = 0  # 0 = all

    def __post_init__(self) -> None:
        require(self.source == "labelled" or bool(self.path), "path", f"is required for source '{self.source}'")
        require(self.max_sentences >= 0, "max_sentences", "must be >= 0")



@dataclass(frozen=True)
class DataConfig:
    labels: tuple[str, ...] = WIKIANN_LABELS
    max_length: int = 32  # WordPiece tokens, specials included (the paper's setting)
    labelled: LabelledConfig = field(default_factory=LabelledConfig)
    unlabelled: tuple[UnlabelledConfig, ...] = (UnlabelledConfig(),)

    def __post_init__(self) -> None:
        require(len(self.labels) > 0 and self.labels[0] == "O", "labels", "must start with 'O'")
        require(len(set(self.labels)) == len(self.labels), "labels", "has duplicates")
        for tag in self.labels[1:]:
            require(tag[:2] in ("B-", "I-") and len(tag) > 2, "labels",
                    f"tag {tag!r} is not IOB2 (expected B-TYPE or I-TYPE)")
        require(8 <= self.max_length <= 4096, "max_length", f"must be in [8, 4096], got {self.max_length}")
