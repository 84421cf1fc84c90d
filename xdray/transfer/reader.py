"""Streaming reader of a transfer set for student training; plain pyarrow + torch, no Ray.

Memory stays bounded whatever the size of the set: shards are read a row group at a time in a
shuffled order, rows pass through a fixed-size shuffle buffer, and batches are cut from windows of
that buffer sorted by length (little padding, still random). A held-out slice, chosen by uid hash,
serves early stopping and never appears in the training stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from xdray.core.batching import sorted_batches
from xdray.transfer.format import MANIFEST, SCHEMA_VERSION, TransferSetError, read_manifest, schema

_GOLDEN = 0x9E3779B97F4A7C15  # uid -> well-mixed 64-bit hash (Fibonacci hashing)


@dataclass
class TransferBatch:
    uid: torch.Tensor  # (B,) int64
    langs: list[str]
    input_ids: torch.Tensor  # (B, T) int64, padded with pad_id
    mask: torch.Tensor  # (B, T) bool, True on real tokens
    logits: torch.Tensor  # (B, T, C) float32
    hidden: torch.Tensor | None  # (B, T, D) float32, or None when the set stores none

    @property
    def tokens(self) -> int:
        return int(self.mask.sum())


def heldout_mask(uids: np.ndarray, fraction: float) -> np.ndarray:
    """True for the uids in the held-out slice: a fixed hash of the uid, independent of shards."""
    mixed = (uids.astype(np.uint64) * np.uint64(_GOLDEN)) >> np.uint64(40)  # 24 high bits
    return mixed < np.uint64(int(fraction * (1 << 24)))


def _rows(record: pa.RecordBatch, num_labels: int, hidden_dim: int) -> list[tuple]:
    """(uid, lang, ids, logits, hidden) per row, as copies (the record batch can then be freed)."""
    def values(name: str) -> tuple[np.ndarray, np.ndarray]:
        column = record.column(name)
        return column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False)

    uids = record.column("uid").to_numpy()
    langs = record.column("lang").to_pylist()
    ids_off, ids = values("input_ids")
    lg_off, lg = values("logits")
    has_hidden = "hidden" in record.schema.names
    hd_off, hd = values("hidden") if has_hidden else (None, None)
    out = []
    for i in range(record.num_rows):
        hidden = hd[hd_off[i]:hd_off[i + 1]].reshape(-1, hidden_dim).copy() if has_hidden else None
        out.append((int(uids[i]), langs[i], ids[ids_off[i]:ids_off[i + 1]].copy(),
                    lg[lg_off[i]:lg_off[i + 1]].reshape(-1, num_labels).copy(), hidden))
    return out


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{field.name}: {field.type}" for field in schema)


class TransferSet:
    """A complete transfer set on disk, checked against what the caller expects of it."""

    def __init__(self, path: str | Path, expect: Mapping[str, object] | None = None):
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest is None:
            state = "is incomplete (a build that has not finished?)" if (self.path / MANIFEST).exists() or \
                self.path.with_name(self.path.name + ".partial").exists() else "has no manifest"
            raise TransferSetError(f"transfer set {self.path} {state}; run `xdray transfer` to build or resume it")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise TransferSetError(f"transfer set {self.path}: schema version {manifest.get('schema_version')}, "
                                   f"this xdray reads version {SCHEMA_VERSION}; rebuild it")
        wrong = {k: (manifest.get(k), v) for k, v in (expect or {}).items() if manifest.get(k) != v}
        if wrong:
            detail = ", ".join(f"{k} is {got!r}, expected {want!r}" for k, (got, want) in wrong.items())
            raise TransferSetError(f"transfer set {self.path} was built for something else: {detail}")
        self.manifest = manifest
        self.num_labels = int(manifest["num_labels"])
        self.hidden_dim = int(manifest["hidden_dim"])  # D, or r for PCA projections
        self.pca = manifest.get("pca")  # {"mean": (D,), "components": (r, D)} when projected
        self.store_hidden = bool(manifest["store_hidden"])
        self._check_files()

    def _check_files(self) -> None:
        expected = schema(self.store_hidden)
        for entry in self.manifest["files"]:
            path = self.path / entry["file"]
            try:
                meta = pq.ParquetFile(path)
            except FileNotFoundError:
                raise TransferSetError(f"transfer set {self.path}: shard {entry['file']} is missing") from None
            except (pa.ArrowInvalid, OSError) as err:
                raise TransferSetError(f"transfer set {self.path}: shard {entry['file']} is unreadable "
                                       f"(truncated?): {err}") from None
            if meta.metadata.num_rows != entry["rows"]:
                raise TransferSetError(f"transfer set {self.path}: shard {entry['file']} has "
                                       f"{meta.metadata.num_rows} rows, the manifest says {entry['rows']}")
            if not meta.schema_arrow.equals(expected):
                raise TransferSetError(f"transfer set {self.path}: shard {entry['file']} has schema "
                                       f"({_columns(meta.schema_arrow)}), expected ({_columns(expected)})")

    @property
    def rows(self) -> int:
        return int(self.manifest["rows"])

    def iter_rows(self, split: str, heldout_fraction: float, shard_order: Sequence[str] | None = None) -> Iterator[tuple]:
        """Rows of one split ("train" or "heldout"), shard by shard, a row group at a time."""
        files = shard_order or [f["file"] for f in self.manifest["files"]]
        columns = ["uid", "lang", "input_ids", "logits"] + (["hidden"] if self.store_hidden else [])
        for name in files:
            reader = pq.ParquetFile(self.path / name)
            for record in reader.iter_batches(batch_size=256, columns=columns):
                keep = heldout_mask(record.column("uid").to_numpy(), heldout_fraction)
                if split == "train":
                    keep = ~keep
                if keep.any():
                    yield from _rows(record.filter(pa.array(keep)), self.num_labels, self.hidden_dim)

    def batches(self, batch_size: int, *, split: str = "train", heldout_fraction: float = 0.05, epoch: int = 0,
                seed: int = 0, shuffle_buffer: int = 8192, bucket_batches: int = 16, pad_id: int = 0
                ) -> Iterator[TransferBatch]:
        """Padded batches. Train: shuffled per (seed, epoch) through a bounded buffer, bucketed by
        length. Held-out: in a fixed order, for stable early-stopping losses."""
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        if split == "heldout":
            rows = sorted(self.iter_rows(split, heldout_fraction), key=lambda r: r[0])  # small by design
            for idx in sorted_batches([len(r[2]) for r in rows], batch_size):  # by length, then uid
                yield collate([rows[i] for i in idx], pad_id)
            return
        rng = np.random.default_rng([seed, epoch])
        files = [f["file"] for f in self.manifest["files"]]
        order = [files[i] for i in rng.permutation(len(files))]
        window = batch_size * bucket_batches
        buffer: list[tuple] = []
        for row in self.iter_rows(split, heldout_fraction, order):
            buffer.append(row)
            if len(buffer) >= max(shuffle_buffer, window):
                yield from _emit(buffer, window, batch_size, rng, pad_id)
        while buffer:
            yield from _emit(buffer, window, batch_size, rng, pad_id)


def _emit(buffer: list[tuple], window: int, batch_size: int, rng: np.random.Generator, pad_id: int) -> Iterator[TransferBatch]:
    """Take `window` random rows out of the buffer, sort them by length, yield shuffled batches."""
    take = min(window, len(buffer))
    picks = rng.choice(len(buffer), size=take, replace=False)
    chosen = [buffer[i] for i in picks]
    for i in sorted(picks, reverse=True):  # swap-remove, O(1) each
        buffer[i] = buffer[-1]
        buffer.pop()
    batches = sorted_batches([len(r[2]) for r in chosen], batch_size)
    for b in rng.permutation(len(batches)):
        yield collate([chosen[i] for i in batches[b]], pad_id)


def collate(rows: Sequence[tuple], pad_id: int) -> TransferBatch:
    """Pad rows (uid, lang, ids, logits, hidden) into a TransferBatch."""
    width = max(len(r[2]) for r in rows)
    n = len(rows)
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=bool)
    logits = np.zeros((n, width, rows[0][3].shape[1]), dtype=np.float32)
    hidden = np.zeros((n, width, rows[0][4].shape[1]), dtype=np.float32) if rows[0][4] is not None else None
    for i, (_, _, row_ids, row_logits, row_hidden) in enumerate(rows):
        length = len(row_ids)
        ids[i, :length] = row_ids
        mask[i, :length] = True
        logits[i, :length] = row_logits
        if hidden is not None:
            hidden[i, :length] = row_hidden
    return TransferBatch(uid=torch.tensor([r[0] for r in rows]), langs=[r[1] for r in rows],
                         input_ids=torch.from_numpy(ids), mask=torch.from_numpy(mask),
                         logits=torch.from_numpy(logits),
                         hidden=torch.from_numpy(hidden) if hidden is not None else None)
