"""The BiLSTM student, its vocabulary restricted to the teacher WordPieces seen in the data, its
embedding initialisation from the teacher, and save/load as a self-contained directory.

Student: Embedding(V, E) -> dropout -> BiLSTM(E, H per direction) -> dropout
         -> Dense(2H -> D) (the projection matched to the teacher's hidden states) -> GELU
         -> dropout -> Dense(D -> labels).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, UNK = 0, 1  # student ids of [PAD] and [UNK]
UNFREEZE_ORDER = ("output", "projection", "lstm", "embedding")  # gradual unfreezing, top down
CONFIG_FILE, WEIGHTS_FILE, VOCAB_FILE = "config.json", "model.safetensors", "vocab.json"


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


# ----------------------------------------------------------------------------- vocabulary


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


# ----------------------------------------------------------------------------- initialisation


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


# ----------------------------------------------------------------------------- save / load


def save_student(directory: Path, student: BiLSTMStudent, vocab: Vocabulary, labels: Sequence[str], tokenizer,
                 extra: dict | None = None) -> None:
    """A directory that loads without the run directory: config, safetensors weights, vocabulary
    map, labels, and the teacher's tokenizer files."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = {"spec": asdict(student.spec), "labels": list(labels), **(extra or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (directory / VOCAB_FILE).write_text(json.dumps(vocab.to_json()))
    save_file({k: v.contiguous() for k, v in student.state_dict().items()}, str(directory / WEIGHTS_FILE))
    tokenizer.save_pretrained(directory)


def load_student(directory: Path) -> tuple[BiLSTMStudent, Vocabulary, list[str], object]:
    """(model in eval mode, vocabulary, labels, tokenizer) from a saved student directory."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    config = json.loads((directory / CONFIG_FILE).read_text())
    vocab_json = json.loads((directory / VOCAB_FILE).read_text())
    student = BiLSTMStudent(StudentSpec(**config["spec"]))
    student.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    vocab = Vocabulary(vocab_json["teacher_ids"], vocab_json["teacher_vocab_size"])
    # fix_mistral_regex=False: tokenise as the teacher did (its default), without transformers 5
    # taking our config.json, which has no model_type, for an old Mistral one and warning so.
    tokenizer = AutoTokenizer.from_pretrained(directory, fix_mistral_regex=False)
    return student.eval(), vocab, config["labels"], tokenizer
