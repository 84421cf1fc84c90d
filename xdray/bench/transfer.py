"""`xdray bench transfer`: building a transfer set the way a user would write it by hand (one process,
the HF model in eval mode, a DataLoader in data order, padding to the batch max, fp32 arrays saved
with numpy) versus xdray's Ray Data pipeline, on the same teacher, sentences and cores.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from xdray.bench.common import bench_sentences, bench_teacher, panx_dir, show, xdray_transfer
from xdray.transfer.format import resolve_layer


def naive_transfer(teacher_dir: Path, sentences: list[list[str]], out_dir: Path, layer: int, max_length: int,
                   batch_size: int = 32) -> tuple[float, int, int]:
    """What a user would write: (seconds, bytes written, real tokens)."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForTokenClassification.from_pretrained(teacher_dir, use_safetensors=True).eval()
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


def bench_transfer(n: int, teacher: str | None, hidden: int, layers: int, layer: int, max_length: int,
                   panx: Path) -> dict:
    sentences, langs, source = bench_sentences(n, panx)
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


def main(args) -> int:
    return show(bench_transfer(args.n, args.teacher, args.hidden, args.layers, args.layer, args.max_length,
                               panx_dir(args.data)), args.json)


