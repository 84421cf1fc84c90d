"""`xdray bench train`: student training, a straightforward padded loop against xdray's trial loop."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from xdray.bench.common import bench_sentences, bench_teacher, panx_dir, show, xdray_transfer
from xdray.config import config_from_dict
from xdray.data.schema import WIKIANN_LABELS



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

    from xdray.distill.schedule import SubStage
    from xdray.distill.schema import StageConfig
    from xdray.distill.student import UNFREEZE_ORDER
    from xdray.distill.loop import LoopSettings, batches, loss_of, train_epoch

    sub = SubStage(StageConfig(name="logits", loss="logit", batch_size=batch_size), 1, UNFREEZE_ORDER)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    tokens = [0]

    def stream():
        for b in batches(td, LoopSettings(cfg.seed, cfg.distill.heldout_fraction), sub, "train", 0):
            tokens[0] += b.tokens
            yield b

    started = time.perf_counter()
    train_epoch(student, optimizer, stream(), lambda b: loss_of(student, b, sub, None))
    return time.perf_counter() - started, tokens[0]


def bench_train(n: int, embedding_dim: int, hidden_size: int, max_length: int, batch_size: int, panx: Path) -> dict:
    import torch

    from xdray.core.runtime import torch_threads
    from xdray.distill.student import BiLSTMStudent, StudentSpec
    from xdray.distill.trial import prepare
    from xdray.pipeline import trial_settings

    sentences, langs, source = bench_sentences(n, panx)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="xdray-bench-") as tmp:
        tmp = Path(tmp)
        teacher_dir = bench_teacher(tmp / "teacher", sentences, 128, 2)
        _, manifest, path = xdray_transfer(teacher_dir, sentences, langs, tmp / "run", -1, max_length, cores)
        cfg = config_from_dict({"name": "bench", "distill": {"heldout_fraction": 0.01}})
        td = prepare(trial_settings(cfg), teacher_dir, path, None, labels=WIKIANN_LABELS)

        def student():
            torch.manual_seed(0)
            return BiLSTMStudent(StudentSpec(len(td.vocab), embedding_dim, hidden_size, td.teacher_hidden,
                                             len(WIKIANN_LABELS)))

        with torch_threads(cores):
            naive_s, naive_tokens = naive_epoch(student(), td, max_length, batch_size, 0)
            xdray_s, xdray_tokens = xdray_epoch(student(), td, cfg, batch_size)
    return {
        "n": len(sentences), "source": source, "cores": cores, "max_length": max_length,
        "student": f"E{embedding_dim}-H{hidden_size}", "batch_size": batch_size,
        "naive_s": round(naive_s, 2), "xdray_s": round(xdray_s, 2),
        "naive_tokens_per_s": round(naive_tokens / naive_s), "xdray_tokens_per_s": round(xdray_tokens / xdray_s),
        "speedup": round((xdray_tokens / xdray_s) / (naive_tokens / naive_s), 3),
    }


def main(args) -> int:
    return show(bench_train(args.n, args.embedding_dim, args.hidden_size, args.max_length, args.batch_size,
                            panx_dir(args.data)), args.json)
