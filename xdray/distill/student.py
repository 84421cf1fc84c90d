"""The BiLSTM student (its vocabulary and embedding initialisation are in xdray.distill.vocab,
its saved directory in xdray.distill.saved).

Student: Embedding(V, E) -> dropout -> BiLSTM(E, H per direction) -> dropout
         -> Dense(2H -> D) (the projection matched to the teacher's hidden states) -> GELU
         -> dropout -> Dense(D -> labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, UNK = 0, 1  # student ids of [PAD] and [UNK]
UNFREEZE_ORDER = ("output", "projection", "lstm", "embedding")  # gradual unfreezing, top down


@dataclass(frozen=True)
class StudentSpec:
    vocab_size: int  # V: restricted vocabulary, PAD and UNK included
    embedding_dim: int  # E
    hidden_size: int  # H per LSTM direction
    projection_dim: int  # D: the teacher's hidden size (or its PCA width is applied in the loss)
    num_labels: int  # C
    dropout: float = 0.2


class BiLSTMStudent(nn.Module):
    def __init__(self, spec: StudentSpec):
        super().__init__()
        self.spec = spec
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim, padding_idx=PAD)
        self.lstm = nn.LSTM(spec.embedding_dim, spec.hidden_size, batch_first=True, bidirectional=True)
        self.projection = nn.Linear(2 * spec.hidden_size, spec.projection_dim)
        self.output = nn.Linear(spec.projection_dim, spec.num_labels)
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) student ids, lengths (B,) -> projection before its GELU (B, T, D), logits (B, T, C).

        Sequences are packed, so the LSTM never runs over padding.
        """
        x = self.dropout(self.embedding(ids))  # (B, T, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, T, 2H)
        projection = self.projection(self.dropout(out))  # (B, T, D)
        return projection, self.output(self.dropout(nn.functional.gelu(projection)))

    def groups(self) -> dict[str, nn.Module]:
        return {"output": self.output, "projection": self.projection, "lstm": self.lstm, "embedding": self.embedding}

    def set_trainable(self, names: Iterable[str]) -> None:
        """Freeze everything but the named groups (see UNFREEZE_ORDER)."""
        names = set(names)
        for name, module in self.groups().items():
            for p in module.parameters():
                p.requires_grad_(name in names)
