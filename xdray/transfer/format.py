"""The transfer-set format (contract, DESIGN.md section 4): one Parquet dataset + manifest.json.

Row schema: uid int64, lang string, input_ids list<int32> (unpadded, specials included), length
int32, logits list<float16> (length x C, flattened), hidden list<float16> (length x D, flattened;
absent when `transfer.hidden: none`). Shards are named by their rows' uids, so a retried batch
overwrites its own shard; the manifest is written last, with `complete: true`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from xdray.core.errors import XdrayError
from xdray.core.records import read_object

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SHARD_GLOB = "shard-*.parquet"


class TransferSetError(XdrayError):
    """A transfer set is missing, incomplete, corrupt or built for something else."""


@dataclass(frozen=True)
class TransferPlan:
    """Everything a teacher actor needs to produce rows; also what the fingerprint covers."""

    teacher_dir: str
    teacher_fingerprint: str
    layer: int  # absolute index into hidden_states (0 = embeddings, num_layers = last)
    store_hidden: bool
    max_length: int
    num_labels: int  # C
    hidden_size: int  # D
    data_fingerprint: str
    hidden_pca: int = 0  # r > 0: hidden states stored as r-dim PCA projections

    @property
    def hidden_dim(self) -> int:
        """Width of a stored hidden-state row: r with PCA, else D."""
        return self.hidden_pca or self.hidden_size


def schema(store_hidden: bool) -> pa.Schema:
    fields = [pa.field("uid", pa.int64()), pa.field("lang", pa.string()),
              pa.field("input_ids", pa.list_(pa.int32())), pa.field("length", pa.int32()),
              pa.field("logits", pa.list_(pa.float16()))]
    if store_hidden:
        fields.append(pa.field("hidden", pa.list_(pa.float16())))
    return pa.schema(fields)


def resolve_layer(layer: int, num_layers: int) -> int:
    """Config layer -> index into HF hidden_states: 1..L as given, negatives from the top (-1 = L)."""
    index = layer if layer >= 0 else num_layers + 1 + layer
    if not 0 <= index <= num_layers:
        raise XdrayError(f"transfer.layer: {layer} is out of range for a teacher with {num_layers} layers "
                         f"(expected 0..{num_layers} or -{num_layers + 1}..-1)")
    return index


def flat_list_column(arrays: list[np.ndarray]) -> pa.Array:
    """Flattened per-row fp16 arrays as one list<float16> column (no Python per element)."""
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum([a.size for a in arrays], out=offsets[1:])
    values = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, np.float16)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(np.float16)))


def write_shard(table: pa.Table, path: Path) -> None:
    """zstd, small row groups (the reader streams one at a time), no dictionaries on floats."""
    pq.write_table(table, path, compression="zstd", use_dictionary=["lang"], row_group_size=256)


def shard_name(uids: np.ndarray) -> str:
    """Deterministic in the batch's uids: a retried batch overwrites its own shard."""
    digest = hashlib.sha256(np.sort(uids).astype(np.int64).tobytes()).hexdigest()[:16]
    return f"shard-{int(uids.min()):012d}-{digest}.parquet"


def rows_digest(table: pa.Table) -> int:
    """Order-independent hash of rows: sum of per-row sha256 mod 2**64 (equal rows, equal sum).
    Hashes the rows' raw bytes (uid, lang, ids, fp16 values), never Python objects."""
    uids = table.column("uid").to_numpy()
    langs = table.column("lang").to_pylist()
    lists = []
    for name in ("input_ids", "logits", "hidden"):
        if name in table.column_names:
            column = table.column(name).combine_chunks()
            lists.append((column.offsets.to_numpy(), column.values.to_numpy(zero_copy_only=False)))
    total = 0
    for i in range(table.num_rows):
        digest = hashlib.sha256(uids[i].tobytes() + langs[i].encode())
        for offsets, values in lists:
            digest.update(values[offsets[i]:offsets[i + 1]].tobytes())
        total += int.from_bytes(digest.digest()[:8], "little")
    return total % 2**64


def scan_shards(directory: Path) -> dict[str, np.ndarray]:
    """uids of every complete shard; leftover temporary files are removed."""
    for tmp in directory.glob(".tmp-*"):
        tmp.unlink()
    return {p.name: pq.read_table(p, columns=["uid"]).column("uid").to_numpy()
            for p in sorted(directory.glob(SHARD_GLOB))}


def read_manifest(path: Path) -> dict | None:
    """The manifest of a complete transfer set; None for none or an unfinished build; a damaged
    one is CorruptRecord (xdray.core.records)."""
    manifest = read_object(path / MANIFEST, remedy=f"delete {path} to build the transfer set again")
    return manifest if manifest is not None and manifest.get("complete") else None
