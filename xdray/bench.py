"""Benchmarks, side by side in one run, reported as ratios (these machines are noisy).

`xdray bench transfer`: building a transfer set the way a user would write it by hand (one process,
the HF model in eval mode, a DataLoader in data order, padding to the batch max, fp32 arrays saved
with numpy) versus xdray's Ray Data pipeline, on the same teacher, sentences and cores.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from xdray.config import WIKIANN_LABELS, config_from_dict
from xdray.data import synthetic
from xdray.data.iob import read_iob_file
from xdray.transfer import resolve_layer

PANX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "panx"
BENCH_LANGUAGES = ("en", "de", "es", "ru", "ar", "hi", "el", "zh")


def bench_sentences(n: int, panx: Path = PANX) -> tuple[list[list[str]], list[str], str]:
    """n sentences spread over languages: PAN-X train text where present, else synthetic."""
    langs = [l for l in BENCH_LANGUAGES if (panx / f"train-{l}.tsv").exists()]
    per = -(-n // max(len(langs), 1))
    tokens, lang_of = [], []
    if langs:
        for lang in langs:
            parsed = read_iob_file(panx / f"train-{lang}.tsv", WIKIANN_LABELS, lang=lang)
            tokens += parsed.tokens[:per]
            lang_of += [lang] * len(parsed.tokens[:per])
        source = f"PAN-X train ({', '.join(langs)})"
    else:
        for lang in synthetic.LANGUAGES:
            for words, _ in synthetic.generate(lang, "train", -(-n // len(synthetic.LANGUAGES)), seed=7):
                tokens.append(words)
                lang_of.append(lang)
        source = "synthetic"
    return tokens[:n], lang_of[:n], source


def bench_teacher(directory: Path, sentences: list[list[str]], hidden: int, layers: int) -> Path:
    """A BERT token classifier (random weights time like trained ones) with a vocabulary learnt
    on the bench sentences."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    from xdray.teacher import label_kwargs
    from xdray.wordpiece import train_wordpiece

    tokenizer = train_wordpiece(sentences, 16000)
    torch.manual_seed(0)
    model = BertForTokenClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden, max_position_embeddings=128, **label_kwargs(WIKIANN_LABELS)))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def naive_transfer(teacher_dir: Path, sentences: list[list[str]], out_dir: Path, layer: int, max_length: int,
                   batch_size: int = 32) -> tuple[float, int, int]:
    """What a user would write: (seconds, bytes written, real tokens)."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForTokenClassification.from_pretrained(teacher_dir).eval()
    started = time.perf_counter()

    def collate(batch):
        return tokenizer(batch, is_split_into_words=True, truncation=True, max_length=max_length,
                         padding=True, return_tensors="pt")

    written, tokens = 0, 0
    with torch.no_grad():
        for i, enc in enumerate(DataLoader(sentences, batch_size=batch_size, collate_fn=collate)):
            out = model(**enc, output_hidden_states=True)
            tokens += int(enc["attention_mask"].sum())
            for name, array in (("logits", out.logits), ("hidden", out.hidden_states[layer])):
                path = out_dir / f"{name}-{i:05d}.npy"
                np.save(path, array.numpy().astype(np.float32))
                written += path.stat().st_size
    return time.perf_counter() - started, written, tokens


def xdray_transfer(teacher_dir: Path, sentences: list[list[str]], langs: list[str], run_dir: Path, layer: int,
                   max_length: int, cores: int) -> tuple[float, dict[str, Any], Path]:
    """xdray's pipeline on a local cluster of `cores` CPUs: (seconds, manifest, path)."""
    from xdray.runtime import init_ray
    from xdray.transfer import build_from_rows

    cfg = config_from_dict({"name": "bench", "data": {"max_length": max_length},
                            "transfer": {"layer": layer}, "runtime": {"num_cpus": cores, "progress": "off"}})
    init_ray(cfg.runtime)  # cluster start-up is not part of the build
    rows = pa.table({"uid": pa.array(np.arange(len(sentences), dtype=np.int64)), "lang": langs,
                     "tokens": pa.array(sentences, type=pa.list_(pa.string()))})
    started = time.perf_counter()
    out = build_from_rows(cfg, run_dir, teacher_dir, "bench", rows, f"bench-{len(sentences)}")
    return time.perf_counter() - started, out.manifest, out.path


def bench_transfer(n: int, teacher: str | None, hidden: int, layers: int, layer: int, max_length: int) -> dict:
    sentences, langs, source = bench_sentences(n)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="xdray-bench-") as tmp:
        tmp = Path(tmp)
        teacher_dir = Path(teacher) if teacher else bench_teacher(tmp / "teacher", sentences, hidden, layers)
        layer = resolve_layer(layer, json.loads((teacher_dir / "config.json").read_text())["num_hidden_layers"])
        (tmp / "naive").mkdir()
        naive_s, naive_bytes, tokens = naive_transfer(teacher_dir, sentences, tmp / "naive", layer, max_length)
        xdray_s, manifest, path = xdray_transfer(teacher_dir, sentences, langs, tmp / "run", layer, max_length, cores)
        xdray_bytes = sum((path / f["file"]).stat().st_size for f in manifest["files"])
    c, d = manifest["num_labels"], manifest["hidden_dim"]
    return {
        "n": len(sentences), "source": source, "cores": cores, "tokens": tokens,
        "teacher": str(teacher) if teacher else f"random BERT hidden {hidden}, {layers} layers",
        "naive_s": round(naive_s, 2), "xdray_s": round(xdray_s, 2),
        "naive_seq_per_s": round(len(sentences) / naive_s, 1), "xdray_seq_per_s": round(len(sentences) / xdray_s, 1),
        "speedup": round(naive_s / xdray_s, 3),
        "naive_bytes_per_token": round(naive_bytes / tokens, 1),
        "xdray_bytes_per_token": round(xdray_bytes / manifest["tokens"], 1),
        "bytes_per_token_target": 2 * (c + d) + 16,
    }


def show(result: dict, json_only: bool) -> int:
    """A readable table for people (unless --json), then the JSON object as the last line."""
    if not json_only:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    print(json.dumps(result))
    return 0


def main(args) -> int:
    return show(bench_transfer(args.n, args.teacher, args.hidden, args.layers, args.layer, args.max_length), args.json)


# ----------------------------------------------------------------------------- bench train


def naive_epoch(student, td, max_length: int, batch_size: int, seed: int) -> tuple[float, int]:
    """A straightforward loop: everything in memory, padded to max_length, data-loader shuffle, the
    LSTM run over the padding (no packing). Returns (seconds, real tokens)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from xdray.distill.losses import logit_loss

    rows = list(td.transfer.iter_rows("train", 0.0))
    ids = torch.full((len(rows), max_length), td.pad_id, dtype=torch.long)
    logits = torch.zeros((len(rows), max_length, td.transfer.num_labels))
    for i, (_, _, row_ids, row_logits, _) in enumerate(rows):
        ids[i, :len(row_ids)] = torch.from_numpy(row_ids.astype("int64"))
        logits[i, :len(row_ids)] = torch.from_numpy(row_logits.astype("float32"))
    loader = DataLoader(TensorDataset(ids, logits), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    student.train()
    started, tokens = time.perf_counter(), 0
    for batch_ids, batch_logits in loader:
        mask = batch_ids != td.pad_id
        x = student.dropout(student.embedding(td.vocab.map(batch_ids)))
        out, _ = student.lstm(x)
        projection = torch.nn.functional.gelu(student.projection(student.dropout(out)))
        loss = logit_loss(student.output(student.dropout(projection)), batch_logits, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        tokens += int(mask.sum())
    return time.perf_counter() - started, tokens


def xdray_epoch(student, td, cfg, batch_size: int) -> tuple[float, int]:
    """One epoch of xdray's own LogitLoss sub-stage loop (streaming reader, length buckets,
    packed sequences). Returns (seconds, real tokens)."""
    import torch

    from xdray.config import StageConfig
    from xdray.distill.schedule import SubStage
    from xdray.distill.trial import batches, loss_of, train_epoch
    from xdray.student import UNFREEZE_ORDER

    sub = SubStage(StageConfig(name="logits", loss="logit", batch_size=batch_size), 1, UNFREEZE_ORDER)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    tokens = [0]

    def stream():
        for b in batches(td, cfg, sub, "train", 0):
            tokens[0] += b.tokens
            yield b

    started = time.perf_counter()
    train_epoch(student, optimizer, stream(), lambda b: loss_of(student, b, cfg, sub, None), lambda s: 1e-3, 0)
    return time.perf_counter() - started, tokens[0]


def bench_train(n: int, embedding_dim: int, hidden_size: int, max_length: int, batch_size: int) -> dict:
    import torch

    from xdray.distill.trial import prepare
    from xdray.student import BiLSTMStudent, StudentSpec

    sentences, langs, source = bench_sentences(n)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="xdray-bench-") as tmp:
        tmp = Path(tmp)
        teacher_dir = bench_teacher(tmp / "teacher", sentences, 128, 2)
        _, manifest, path = xdray_transfer(teacher_dir, sentences, langs, tmp / "run", -1, max_length, cores)
        cfg = config_from_dict({"name": "bench", "distill": {"heldout_fraction": 0.01}})
        td = prepare(cfg, teacher_dir, path, None, labels=WIKIANN_LABELS)
        torch.set_num_threads(cores)

        def student():
            torch.manual_seed(0)
            return BiLSTMStudent(StudentSpec(len(td.vocab), embedding_dim, hidden_size, td.teacher_hidden,
                                             len(WIKIANN_LABELS)))

        naive_s, naive_tokens = naive_epoch(student(), td, max_length, batch_size, 0)
        xdray_s, xdray_tokens = xdray_epoch(student(), td, cfg, batch_size)
    return {
        "n": len(sentences), "source": source, "cores": cores, "max_length": max_length,
        "student": f"E{embedding_dim}-H{hidden_size}", "batch_size": batch_size,
        "naive_s": round(naive_s, 2), "xdray_s": round(xdray_s, 2),
        "naive_tokens_per_s": round(naive_tokens / naive_s), "xdray_tokens_per_s": round(xdray_tokens / xdray_s),
        "speedup": round((xdray_tokens / xdray_s) / (naive_tokens / naive_s), 3),
    }


def main_train(args) -> int:
    return show(bench_train(args.n, args.embedding_dim, args.hidden_size, args.max_length, args.batch_size), args.json)
