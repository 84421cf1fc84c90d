"""Every word tagged, whatever the sentence's length: sentences longer than max_length sub-tokens
are cut into overlapping windows, and each word is tagged from the window where it has the most
context around it.

One inference path for the evaluation of the teacher and the students, `xdray predict` and the
server, so the F1 the report prints is the F1 a user gets. A word's tag is read at its first
sub-token; words the tokenizer turns into no piece at all are tagged O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from xdray.core.batching import pad_batch, sorted_batches
from xdray.core.metrics import f1_report

# logits_of(ids (B, T) teacher ids, mask (B, T) bool) -> logits (B, T, C): the teacher or a student
LogitsOf = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Frame:
    """The special tokens a model wants around a sequence: [CLS] ... [SEP] or <s> ... </s>."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    pad_id: int

    @classmethod
    def of(cls, tokenizer: Any) -> "Frame":
        enc = tokenizer([["a"]], is_split_into_words=True)
        ids, word_ids = enc["input_ids"][0], enc.word_ids(0)
        text = [i for i, w in enumerate(word_ids) if w is not None]
        return cls(tuple(ids[:text[0]]), tuple(ids[text[-1] + 1:]), int(tokenizer.pad_token_id))

    def body(self, max_length: int) -> int:
        """Sub-tokens of text a window of max_length holds."""
        return max_length - len(self.prefix) - len(self.suffix)


@dataclass
class WordView:
    """Sentences as the tokenizer splits them, untruncated: per sentence its pieces (no specials)
    and, per word, the position of its first piece (-1 for a word that gave no piece)."""

    pieces: list[np.ndarray]  # int64 teacher ids
    firsts: list[np.ndarray]  # int64, one per word
    frame: Frame
    max_length: int
    gold: list[np.ndarray] | None = None  # int64 label ids, one per word

    def __len__(self) -> int:
        return len(self.pieces)


def word_view(tokenizer: Any, sentences: Sequence[Sequence[str]], max_length: int,
              tags: Sequence[Sequence[int]] | None = None) -> WordView:
    """Tokenise pre-split words without truncation."""
    frame = Frame.of(tokenizer)
    if frame.body(max_length) < 2:
        raise ValueError(f"max_length {max_length} leaves no room for text beside the special tokens")
    enc = tokenizer([list(s) for s in sentences], is_split_into_words=True, add_special_tokens=False,
                    truncation=False)
    pieces, firsts = [], []
    for i, words in enumerate(sentences):
        first = np.full(len(words), -1, dtype=np.int64)
        for position, word in reversed(list(enumerate(enc.word_ids(i)))):
            if word is not None:
                first[word] = position
        pieces.append(np.asarray(enc["input_ids"][i], dtype=np.int64))
        firsts.append(first)
    gold = [np.asarray(t, dtype=np.int64) for t in tags] if tags is not None else None
    return WordView(pieces, firsts, frame, max_length, gold)


def window_spans(length: int, body: int, context: int | None = None) -> list[tuple[int, int, int, int]]:
    """(start, end, own_start, own_end) piece ranges covering a sequence of `length` pieces: each
    window [start, end) holds at most `body` pieces; the pieces in [own_start, own_end) are tagged
    from it, and those ranges tile [0, length). Windows overlap by `context` pieces (default a
    quarter of the body) on each side, so a tagged piece has context on both sides where the
    sentence has it."""
    if length <= body:
        return [(0, length, 0, length)]
    context = body // 4 if context is None else min(context, (body - 1) // 2)
    spans, own = [], 0
    while own < length:
        start = max(0, own - context)
        end = min(length, start + body)
        own_end = end if end == length else end - context
        spans.append((start, end, own, own_end))
        own = own_end
    return spans


@torch.inference_mode()
def tag_words(logits_of: LogitsOf, view: WordView, batch_size: int = 128,
              device: str | torch.device = "cpu") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(label ids, probabilities of those labels), one per word of every sentence."""
    frame = view.frame
    windows, owners = [], []  # owners: (sentence, start, own_start, own_end) per window
    for s, pieces in enumerate(view.pieces):
        for start, end, own_start, own_end in window_spans(len(pieces), frame.body(view.max_length)):
            windows.append(np.concatenate([frame.prefix, pieces[start:end], frame.suffix]).astype(np.int64))
            owners.append((s, start, own_start, own_end))
    piece_label = [np.zeros(len(p), dtype=np.int64) for p in view.pieces]
    piece_score = [np.ones(len(p), dtype=np.float32) for p in view.pieces]
    offset = len(frame.prefix)
    for idx in sorted_batches([len(w) for w in windows], batch_size):
        ids = pad_batch([windows[i] for i in idx], frame.pad_id).to(device)
        probs = torch.softmax(logits_of(ids, ids != frame.pad_id).float(), -1)
        score, best = (t.cpu().numpy() for t in probs.max(-1))
        for row, i in enumerate(idx):
            s, start, own_start, own_end = owners[i]
            cols = slice(own_start - start + offset, own_end - start + offset)
            piece_label[s][own_start:own_end] = best[row, cols]
            piece_score[s][own_start:own_end] = score[row, cols]
    labels, scores = [], []
    for s, first in enumerate(view.firsts):
        has = first >= 0
        labels.append(np.where(has, piece_label[s][np.maximum(first, 0)], 0))
        scores.append(np.where(has, piece_score[s][np.maximum(first, 0)], 1.0).astype(np.float32))
    return labels, scores


def evaluate_words(logits_of: LogitsOf, view: WordView, langs: Sequence[str], names: Sequence[str],
                   batch_size: int = 128, device: str | torch.device = "cpu") -> dict:
    """Entity F1 per language over every word (see core.metrics.f1_report), through tag_words.
    Label id 0 must be O, as LabelledData guarantees."""
    if view.gold is None:
        raise ValueError("evaluate_words needs a view with gold tags")
    predicted, _ = tag_words(logits_of, view, batch_size, device)
    return f1_report(view.gold, predicted, langs, names)
