"""Encoding with the teacher's fast tokenizer.

Each word's label sits on its first sub-token; continuation pieces and special tokens get
IGNORE_INDEX, so they count neither in the loss nor in evaluation. Sentences longer than
max_length are truncated, and the truncation is counted and reported, never silent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from xdray.core.errors import TeacherError
from xdray.core.metrics import IGNORE_INDEX
from xdray.data.windows import WordView, word_view

log = logging.getLogger(__name__)


@dataclass
class EncodeStats:
    sentences: int = 0
    words: int = 0
    truncated_sentences: int = 0
    truncated_words: int = 0  # words cut off by max_length
    empty_words: int = 0  # words the tokenizer turned into no piece at all
    truncated_rows: list[int] = field(default_factory=list)  # per sentence, in order: 1 if truncated

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}

    def add(self, other: "EncodeStats") -> None:
        """Merge the stats of the sentences that follow these."""
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.truncated_rows += other.truncated_rows

    def log(self, what: str, windowed: bool = False) -> None:
        """Say what the encoding lost. `windowed`: a split scored by xdray.data.windows, which tags
        every word (long sentences in overlapping windows), so truncation loses nothing there."""
        if self.empty_words or (self.truncated_sentences and not windowed):
            log.warning("%s: %d of %d sentences truncated to max_length (%d words dropped); "
                        "%d words produced no sub-token", what, self.truncated_sentences,
                        self.sentences, self.truncated_words, self.empty_words)
        elif self.truncated_sentences:
            log.debug("%s: %d of %d sentences longer than max_length: scored in windows, every word tagged",
                      what, self.truncated_sentences, self.sentences)


COUNTS = ("sentences", "words", "truncated_sentences", "truncated_words", "empty_words")


@dataclass
class Encoded:
    """Unpadded token ids (specials included) and aligned labels, one array per sentence."""

    input_ids: list[np.ndarray] = field(default_factory=list)  # int32, (length,)
    labels: list[np.ndarray] = field(default_factory=list)  # int64, (length,), IGNORE_INDEX off first pieces
    langs: list[str] = field(default_factory=list)
    stats: EncodeStats = field(default_factory=EncodeStats)
    words: WordView | None = None  # every word, untruncated, with gold tags: what evaluation reads

    def __len__(self) -> int:
        return len(self.input_ids)


def require_fast(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TeacherError(f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; xdray needs "
                           "word alignment (word_ids), which only fast tokenizers provide")


def encode_batch(tokenizer: Any, tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[int]] | None,
                 max_length: int) -> tuple[list[np.ndarray], list[np.ndarray] | None, EncodeStats]:
    """Tokenise pre-split words; label the first sub-token of each word when tags are given."""
    require_fast(tokenizer)
    enc = tokenizer([list(t) for t in tokens], is_split_into_words=True, truncation=True,
                    max_length=max_length)
    stats = EncodeStats(sentences=len(tokens))
    ids_out, labels_out = [], [] if tags is not None else None
    for i, words in enumerate(tokens):
        word_ids = enc.word_ids(i)
        ids_out.append(np.asarray(enc["input_ids"][i], dtype=np.int32))
        seen = {w for w in word_ids if w is not None}
        stats.words += len(words)
        last = max(seen) if seen else -1
        truncated = last < len(words) - 1 and len(enc["input_ids"][i]) >= max_length
        stats.truncated_rows.append(int(truncated))
        if truncated:
            stats.truncated_sentences += 1
            stats.truncated_words += len(words) - 1 - last
        covered = last + 1 if truncated else len(words)
        stats.empty_words += sum(1 for w in range(covered) if w not in seen)
        if tags is not None:
            labels = np.full(len(word_ids), IGNORE_INDEX, dtype=np.int64)
            previous = None
            for position, word in enumerate(word_ids):
                if word is not None and word != previous:
                    labels[position] = tags[i][word]
                previous = word
            labels_out.append(labels)
    return ids_out, labels_out, stats


def encode_dataset(tokenizer: Any, dataset: Any, max_length: int, with_labels: bool = True,
                   batch_size: int = 1000) -> Encoded:
    """Encode a datasets.Dataset with columns lang, tokens and (if with_labels) ner_tags; with
    labels, also the untruncated word view that evaluation reads."""
    out = Encoded()
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start:start + batch_size]
        ids, labels, stats = encode_batch(tokenizer, batch["tokens"],
                                          batch["ner_tags"] if with_labels else None, max_length)
        out.input_ids += ids
        if labels is not None:
            out.labels += labels
        out.langs += batch["lang"]
        out.stats.add(stats)
    if with_labels:
        out.words = word_view(tokenizer, dataset["tokens"], max_length, dataset["ner_tags"])
    return out


def encode_splits(tokenizer: Any, data: Any, max_length: int) -> dict[str, Encoded]:
    """Every split of a LabelledData encoded, each split's encoding warnings logged once."""
    encoded = {}
    for split, ds in data.splits.items():
        encoded[split] = encode_dataset(tokenizer, ds, max_length)
        encoded[split].stats.log(f"teacher/{split}", windowed=split != "train")
    return encoded
