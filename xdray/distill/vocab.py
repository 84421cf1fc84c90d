"""The student's vocabulary (the teacher WordPieces seen in the data) and its embedding
initialisation from the teacher's fine-tuned word embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch

from xdray.distill.student import PAD, UNK

if TYPE_CHECKING:
    from xdray.distill.student import BiLSTMStudent


class Vocabulary:
    """Teacher WordPiece id <-> student id. Student ids: 0 PAD, 1 UNK, then the teacher's other
    special tokens, then every teacher id seen in the data, in teacher-id order."""

    def __init__(self, teacher_ids: Sequence[int], teacher_vocab_size: int):
        self.teacher_ids = [int(i) for i in teacher_ids]
        self.teacher_vocab_size = teacher_vocab_size
        lookup = torch.full((teacher_vocab_size,), UNK, dtype=torch.long)
        lookup[torch.tensor(self.teacher_ids)] = torch.arange(len(self.teacher_ids))
        self._lookup = lookup

    @classmethod
    def from_data(cls, sequences: Iterable[np.ndarray], tokenizer, max_size: int = 0) -> "Vocabulary":
        """The pieces seen in `sequences`; with max_size > 0 only the most frequent of them (ties
        broken by teacher id), specials always kept, so the vocabulary has at most max_size rows."""
        counts: dict[int, int] = {}
        for ids in sequences:
            values, n = np.unique(ids, return_counts=True)
            for value, count in zip(values.tolist(), n.tolist()):
                counts[value] = counts.get(value, 0) + count
        specials = [tokenizer.pad_token_id, tokenizer.unk_token_id]
        others = sorted(set(tokenizer.all_special_ids) - set(specials))
        rest = sorted(set(counts) - set(specials) - set(others))
        if max_size:
            keep = max(0, max_size - len(specials) - len(others))
            rest = sorted(sorted(rest, key=lambda i: (-counts[i], i))[:keep])
        return cls(specials + others + rest, len(tokenizer))

    def __len__(self) -> int:
        return len(self.teacher_ids)

    def map(self, teacher_ids: torch.Tensor) -> torch.Tensor:
        """Teacher ids (any shape) -> student ids; unseen pieces become UNK."""
        return self._lookup[teacher_ids]

    def to_json(self) -> dict:
        return {"teacher_ids": self.teacher_ids, "teacher_vocab_size": self.teacher_vocab_size}


def init_embedding(student: BiLSTMStudent, teacher_embeddings: torch.Tensor, vocab: Vocabulary, method: str,
                   seed: int) -> None:
    """Initialise the student's embedding rows from the teacher's fine-tuned word embeddings of the
    same WordPieces: `svd` (truncated SVD: the rows' coordinates on the top-E right singular
    vectors), `pca` (the same after centring), or `random` U(-0.1, 0.1), the paper's ablation."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.empty_like(student.embedding.weight).uniform_(-0.1, 0.1, generator=generator)
    if method != "random":
        rows = teacher_embeddings[torch.tensor(vocab.teacher_ids)].double()  # (V, D_teacher)
        if method == "pca":
            rows = rows - rows.mean(0, keepdim=True)
        _, _, vt = torch.linalg.svd(rows, full_matrices=False)
        k = min(student.spec.embedding_dim, vt.shape[0])
        weight[:, :k] = (rows @ vt[:k].T).to(weight.dtype)  # (V, k)
    weight[PAD] = 0.0
    with torch.no_grad():
        student.embedding.weight.copy_(weight)
