"""The transfer build on Ray Data: tokenize (CPU tasks) -> TeacherPredictor (an actor pool, one
actor per GPU on GPU clusters) -> one Parquet shard per batch, written by the actor itself: to a
temporary name, then an atomic rename to a name derived from the batch's uids, so a retried batch
(an actor killed mid-build) overwrites its own shard instead of adding a duplicate, and a reader
never sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from xdray.core.batching import pad_batch, sorted_batches
from xdray.core.faults import crash_point
from xdray.core.files import atomic_write_json
from xdray.core.runtime import LogThrottle, RuntimeConfig, init_ray, largest_node_cpus
from xdray.data.encode import encode_batch
from xdray.data.sources import sample_indices
from xdray.transfer.format import TransferPlan, flat_list_column, schema, shard_name, write_shard
from xdray.transfer.schema import TransferConfig


log = logging.getLogger(__name__)

CRASH_POINT = "transfer-actor"  # see xdray.core.faults


_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(teacher_dir: str):
    if teacher_dir not in _TOKENIZERS:  # once per worker process
        from transformers import AutoTokenizer

        _TOKENIZERS[teacher_dir] = AutoTokenizer.from_pretrained(teacher_dir)
    return _TOKENIZERS[teacher_dir]


def tokenize_batch(batch: pa.Table, teacher_dir: str, max_length: int) -> pa.Table:
    """(uid, lang, tokens) -> (uid, lang, input_ids, length, truncated) with the teacher's tokenizer,
    through the same encoding as the labelled data (`truncated`: 1 where max_length cut words off)."""
    ids, _, stats = encode_batch(_tokenizer(teacher_dir), batch.column("tokens").to_pylist(), None, max_length)
    return pa.table({"uid": batch.column("uid"), "lang": batch.column("lang"),
                     "input_ids": pa.array([x.tolist() for x in ids], type=pa.list_(pa.int32())),
                     "length": pa.array([len(x) for x in ids], type=pa.int32()),
                     "truncated": pa.array(stats.truncated_rows, type=pa.int8())})


class TeacherPredictor:
    """Ray Data actor: teacher forward passes on length-sorted micro-batches, one shard per batch."""

    def __init__(self, plan: dict, out_dir: str, micro_batch: int, fp16: bool, threads: int,
                 pca: dict | None = None):
        import torch
        from transformers import AutoModelForTokenClassification

        self.plan = TransferPlan(**plan)
        self.out_dir = Path(out_dir)
        self.micro_batch = micro_batch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(max(1, threads))
        model = AutoModelForTokenClassification.from_pretrained(self.plan.teacher_dir, use_safetensors=True)
        model = model.eval().to(self.device)
        self.model = model.half() if fp16 and self.device == "cuda" else model
        self.pad_id = _tokenizer(self.plan.teacher_dir).pad_token_id
        self.pca = None
        if pca is not None:  # (mean (D,), components (r, D)) in fp32 on the inference device
            self.pca = (torch.tensor(pca["mean"], device=self.device),
                        torch.tensor(pca["components"], device=self.device))

    def _forward(self, ids: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """fp16 logits (len, C) and hidden states (len, D) per sequence."""
        import torch

        tensor = pad_batch(ids, self.pad_id).to(self.device)  # (B, T)
        with torch.inference_mode():
            out = self.model(input_ids=tensor, attention_mask=(tensor != self.pad_id).long(),
                             output_hidden_states=self.plan.store_hidden)
        logits = out.logits.to(torch.float16).cpu().numpy()  # (B, T, C)
        hidden = None
        if self.plan.store_hidden:
            states = out.hidden_states[self.plan.layer].float()  # (B, T, D)
            if self.pca is not None:
                states = (states - self.pca[0]) @ self.pca[1].T  # (B, T, r)
            hidden = states.to(torch.float16).cpu().numpy()
        return ([logits[i, :len(x)] for i, x in enumerate(ids)],
                [hidden[i, :len(x)] for i, x in enumerate(ids)] if hidden is not None else [])

    def __call__(self, batch: pa.Table) -> pa.Table:
        crash_point(self.out_dir, CRASH_POINT)
        lengths = batch.column("length").to_numpy()
        micro_batches = sorted_batches(lengths, self.micro_batch)  # length-sorted: little padding
        batch = batch.take(pa.array([i for b in micro_batches for i in b]))
        ids = [np.asarray(x, dtype=np.int64) for x in batch.column("input_ids").to_numpy(zero_copy_only=False)]
        logits, hidden = [], []
        for start in range(0, len(ids), self.micro_batch):
            lg, hd = self._forward(ids[start:start + self.micro_batch])
            logits += lg
            hidden += hd
        columns = {"uid": batch.column("uid"), "lang": batch.column("lang"), "input_ids": batch.column("input_ids"),
                   "length": batch.column("length"), "logits": flat_list_column(logits)}
        if self.plan.store_hidden:
            columns["hidden"] = flat_list_column(hidden)
        table = pa.table(columns, schema=schema(self.plan.store_hidden))
        name = shard_name(table.column("uid").to_numpy())
        tmp = self.out_dir / f".tmp-{name}-{os.getpid()}"
        write_shard(table, tmp)
        os.replace(tmp, self.out_dir / name)  # atomic: the shard exists whole or not at all
        truncated = int(batch.column("truncated").to_numpy().sum())
        return pa.table({"shard": [name], "rows": [table.num_rows], "tokens": [int(lengths.sum())],
                         "truncated": [truncated]})


PCA_SAMPLE_SENTENCES = 2000


def fit_pca(plan: dict, sample: pa.Table, micro_batch: int, fp16: bool, threads: int) -> dict:
    """PCA of the teacher's layer states over the tokens of `sample`: {"mean", "components" (r, D),
    "explained_variance_ratio"}. Runs where the predictor runs (a Ray task with its resources)."""
    import torch

    p = TransferPlan(**plan)
    predictor = TeacherPredictor({**plan, "hidden_pca": 0}, "/nonexistent", micro_batch, fp16, threads)
    tokenized = tokenize_batch(sample, p.teacher_dir, p.max_length)
    ids = [np.asarray(x, dtype=np.int64) for x in tokenized.column("input_ids").to_numpy(zero_copy_only=False)]
    states = []
    for start in range(0, len(ids), micro_batch):
        states += predictor._forward(ids[start:start + micro_batch])[1]
    x = torch.from_numpy(np.concatenate(states).astype(np.float64))  # (tokens, D)
    mean = x.mean(0)
    _, singular, v = torch.linalg.svd(x - mean, full_matrices=False)
    variance = singular ** 2
    return {"mean": mean.float().tolist(), "components": v[:p.hidden_pca].float().tolist(),
            "explained_variance_ratio": float(variance[:p.hidden_pca].sum() / variance.sum())}


def _resources(tc: TransferConfig) -> dict[str, Any]:
    """Actor pool size and per-actor resources: one actor per GPU where there are GPUs; on CPU,
    actors x threads fit the cores, leaving a quarter core for tokenising tasks."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), largest_node_cpus(tc.resources_per_actor)
    actors = tc.actors
    if gpus:
        n = gpus if actors == "auto" else actors
        return {"actors": n, "num_gpus": 1, "num_cpus": 1, "threads": 1}
    n = 1 if actors == "auto" else actors
    per_actor = max(0.5, (cpus - 0.25) / n)
    return {"actors": n, "num_gpus": 0, "num_cpus": per_actor, "threads": max(1, round(per_actor))}


def pca_basis(tc: TransferConfig, runtime: RuntimeConfig, seed: int, plan: TransferPlan, rows: pa.Table,
              staging: Path) -> dict | None:
    """The PCA basis for this build, fitted once and kept in the staging directory, so a resumed
    build projects with the very same basis."""
    if not plan.hidden_pca:
        return None
    path = staging / "pca.json"
    if path.exists():
        return json.loads(path.read_text())
    import ray

    init_ray(runtime)
    res = _resources(tc)
    take = sample_indices(rows.num_rows, PCA_SAMPLE_SENTENCES, seed, "pca")
    task = ray.remote(fit_pca).options(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"],
                                       resources=tc.resources_per_actor or None)
    basis = ray.get(task.remote(asdict(plan), rows.take(pa.array(take)), tc.micro_batch, tc.fp16, res["threads"]))
    atomic_write_json(path, basis)
    log.info("transfer: PCA to %d dims keeps %.1f%% of the variance of layer %d", plan.hidden_pca,
             100 * basis["explained_variance_ratio"], plan.layer)
    return basis


def run_pipeline(tc: TransferConfig, runtime: RuntimeConfig, plan: TransferPlan, pending: pa.Table, out_dir: Path,
                 pca: dict | None) -> int:
    """Build shards for `pending` rows into out_dir with Ray Data; returns how many were truncated."""
    import ray

    init_ray(runtime)
    res = _resources(tc)
    log.info("transfer: %d sentences on %d actor(s) (%s)", pending.num_rows, res["actors"],
             f"{res['num_gpus']} GPU each" if res["num_gpus"] else f"{res['threads']} threads each")
    batch = tc.batch_size
    # One input block per batch; no repartition, whose tasks would need a whole free CPU.
    ds = ray.data.from_arrow([pending.slice(i, batch) for i in range(0, pending.num_rows, batch)])
    ds = ds.map_batches(tokenize_batch, batch_format="pyarrow", batch_size=batch, num_cpus=0.25,
                        fn_kwargs={"teacher_dir": plan.teacher_dir, "max_length": plan.max_length})
    ds = ds.map_batches(
        TeacherPredictor, batch_format="pyarrow", batch_size=batch,
        compute=ray.data.ActorPoolStrategy(size=res["actors"]),
        num_gpus=res["num_gpus"], num_cpus=res["num_cpus"], resources=tc.resources_per_actor or None,
        fn_constructor_kwargs={"plan": asdict(plan), "out_dir": str(out_dir), "micro_batch": tc.micro_batch,
                               "fp16": tc.fp16, "threads": res["threads"], "pca": pca})
    # Ray Data restarts a dead actor and retries its batch (max_restarts / max_task_retries = -1 by
    # default for actor pools); the shard name makes the retry overwrite, never duplicate.
    # Shards are written by the actors; the driver drives the stream and counts.
    done, truncated, throttle = 0, 0, LogThrottle()
    for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
        done, truncated = done + int(out["rows"].sum()), truncated + int(out["truncated"].sum())
        if throttle.due():  # a line a minute for people tailing a log
            log.info("transfer: %d of %d sentences", done, pending.num_rows)
    if truncated:
        log.warning("transfer: %d of %d sentences were longer than data.max_length (%d sub-tokens) and were "
                    "truncated: the words past it have no teacher outputs", truncated, pending.num_rows,
                    plan.max_length)
    return truncated
