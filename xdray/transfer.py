"""Transfer stage: teacher logits and hidden states for unlabelled text, built once on Ray Data.

Pipeline: unlabelled rows (uid, lang, tokens) -> tokenize (CPU map_batches) -> TeacherPredictor
(actor pool, one actor per GPU on GPU clusters) -> one Parquet shard per batch. Each actor writes
its shard itself: to a temporary name, then an atomic rename to a name derived from the batch's
uids, so a retried batch (an actor killed mid-build) overwrites its own shard instead of adding a
duplicate, and a reader never sees half a file. Shards go to `transfer/<fp>.partial/`; a rerun
after the driver died reads which uids are done and only builds the rest. The manifest is written
last and the directory renamed to `transfer/<fp>/`: a reader never sees half a build.

Row schema (contract, DESIGN.md section 4): uid int64, lang string, input_ids list<int32>
(unpadded, specials included), length int32, logits list<float16> (length x C, flattened),
hidden list<float16> (length x D, flattened; absent when `transfer.hidden: none`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xdray import storage
from xdray.config import ExperimentConfig
from xdray.data.sources import LabelledData, dataset_fingerprint, load_unlabelled, sample_indices
from xdray.errors import DataError, XdrayError
from xdray.runtime import atomic_write_json, init_ray, largest_node_cpus

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SHARD_GLOB = "shard-*.parquet"
KILL_MARKER = ".xdray-kill-one-actor"  # see TeacherPredictor._fail_if_asked


class TransferSetError(XdrayError):
    """A transfer set is missing, incomplete, corrupt or built for something else."""


@dataclass(frozen=True)
class Plan:
    """Everything an actor needs to produce rows; also what the fingerprint covers."""

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


# ----------------------------------------------------------------------------- Ray Data stages


_TOKENIZERS: dict[str, Any] = {}


def _tokenizer(teacher_dir: str):
    if teacher_dir not in _TOKENIZERS:  # once per worker process
        from transformers import AutoTokenizer

        _TOKENIZERS[teacher_dir] = AutoTokenizer.from_pretrained(teacher_dir)
    return _TOKENIZERS[teacher_dir]


def tokenize_batch(batch: pa.Table, teacher_dir: str, max_length: int) -> pa.Table:
    """(uid, lang, tokens) -> (uid, lang, input_ids, length) with the teacher's tokenizer."""
    enc = _tokenizer(teacher_dir)(batch.column("tokens").to_pylist(), is_split_into_words=True,
                                  truncation=True, max_length=max_length)
    ids = enc["input_ids"]
    return pa.table({"uid": batch.column("uid"), "lang": batch.column("lang"),
                     "input_ids": pa.array(ids, type=pa.list_(pa.int32())),
                     "length": pa.array([len(x) for x in ids], type=pa.int32())})


def _flat(arrays: list[np.ndarray]) -> pa.Array:
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


class TeacherPredictor:
    """Ray Data actor: teacher forward passes on length-sorted micro-batches, one shard per batch."""

    def __init__(self, plan: dict, out_dir: str, micro_batch: int, fp16: bool, threads: int,
                 pca: dict | None = None):
        import torch
        from transformers import AutoModelForTokenClassification

        self.plan = Plan(**plan)
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

        from xdray.teacher import pad_batch

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
        self._fail_if_asked()
        lengths = batch.column("length").to_numpy()
        order = np.argsort(lengths, kind="stable")  # length-sorted micro-batches: little padding
        batch = batch.take(pa.array(order))
        ids = [np.asarray(x, dtype=np.int64) for x in batch.column("input_ids").to_numpy(zero_copy_only=False)]
        logits, hidden = [], []
        for start in range(0, len(ids), self.micro_batch):
            lg, hd = self._forward(ids[start:start + self.micro_batch])
            logits += lg
            hidden += hd
        columns = {"uid": batch.column("uid"), "lang": batch.column("lang"), "input_ids": batch.column("input_ids"),
                   "length": batch.column("length"), "logits": _flat(logits)}
        if self.plan.store_hidden:
            columns["hidden"] = _flat(hidden)
        table = pa.table(columns, schema=schema(self.plan.store_hidden))
        name = shard_name(table.column("uid").to_numpy())
        tmp = self.out_dir / f".tmp-{name}-{os.getpid()}"
        write_shard(table, tmp)
        os.replace(tmp, self.out_dir / name)  # atomic: the shard exists whole or not at all
        return pa.table({"shard": [name], "rows": [table.num_rows], "tokens": [int(lengths.sum())]})

    def _fail_if_asked(self) -> None:
        """Fault injection for tests: if the build directory holds KILL_MARKER, the actor that
        finds it removes it and dies abruptly, as a preempted or OOM-killed worker would."""
        marker = self.out_dir / KILL_MARKER
        try:
            marker.unlink()
        except FileNotFoundError:
            return
        os._exit(1)


# ----------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class TransferOutput:
    path: Path
    fingerprint: str
    manifest: dict[str, Any]
    skipped: bool


def unlabelled_table(cfg: ExperimentConfig, labelled: LabelledData) -> tuple[pa.Table, str]:
    """Rows (uid, lang, tokens) with stable uids, capped at transfer.max_sentences; and their
    fingerprint."""
    ds = load_unlabelled(cfg, labelled)
    if cfg.transfer.max_sentences and len(ds) > cfg.transfer.max_sentences:
        ds = ds.select(sample_indices(len(ds), cfg.transfer.max_sentences, cfg.seed, "transfer"))
    if len(ds) == 0:
        raise DataError("data.unlabelled: no sentences for the transfer set")
    table = ds.with_format("arrow")[:]
    table = pa.table({"uid": pa.array(np.arange(len(ds), dtype=np.int64)),
                      "lang": table.column("lang"), "tokens": table.column("tokens")})
    return table, dataset_fingerprint(cfg.data.labels, {"unlabelled": ds})


def make_plan(cfg: ExperimentConfig, teacher_dir: Path, teacher_fingerprint: str, data_fp: str) -> Plan:
    model_cfg = json.loads((teacher_dir / "config.json").read_text())
    store_hidden = cfg.transfer.hidden == "layer"
    pca = cfg.transfer.hidden_pca if store_hidden else 0
    if pca > model_cfg["hidden_size"]:
        raise XdrayError(f"transfer.hidden_pca: {pca} is more than the teacher's hidden size "
                         f"{model_cfg['hidden_size']}")
    return Plan(teacher_dir=str(teacher_dir), teacher_fingerprint=teacher_fingerprint,
                layer=resolve_layer(cfg.transfer.layer, model_cfg["num_hidden_layers"]),
                store_hidden=store_hidden, max_length=cfg.data.max_length,
                num_labels=len(model_cfg["id2label"]), hidden_size=model_cfg["hidden_size"],
                data_fingerprint=data_fp, hidden_pca=pca)


PCA_SAMPLE_SENTENCES = 2000


def fit_pca(plan: dict, sample: pa.Table, micro_batch: int, fp16: bool, threads: int) -> dict:
    """PCA of the teacher's layer states over the tokens of `sample`: {"mean", "components" (r, D),
    "explained_variance_ratio"}. Runs where the predictor runs (a Ray task with its resources)."""
    import torch

    p = Plan(**plan)
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


def plan_fingerprint(plan: Plan) -> str:
    content = {k: v for k, v in asdict(plan).items() if k != "teacher_dir"}
    content["schema_version"] = SCHEMA_VERSION
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def scan_shards(directory: Path) -> dict[str, np.ndarray]:
    """uids of every complete shard; leftover temporary files are removed."""
    for tmp in directory.glob(".tmp-*"):
        tmp.unlink()
    return {p.name: pq.read_table(p, columns=["uid"]).column("uid").to_numpy()
            for p in sorted(directory.glob(SHARD_GLOB))}


def _resources(cfg: ExperimentConfig) -> dict[str, Any]:
    """Actor pool size and per-actor resources: one actor per GPU where there are GPUs; on CPU,
    actors x threads fit the cores, leaving a quarter core for tokenising tasks."""
    import ray

    total = ray.cluster_resources()
    gpus, cpus = int(total.get("GPU", 0)), largest_node_cpus(cfg.transfer.resources_per_actor)
    actors = cfg.transfer.actors
    if gpus:
        n = gpus if actors == "auto" else actors
        return {"actors": n, "num_gpus": 1, "num_cpus": 1, "threads": 1}
    n = 1 if actors == "auto" else actors
    per_actor = max(0.5, (cpus - 0.25) / n)
    return {"actors": n, "num_gpus": 0, "num_cpus": per_actor, "threads": max(1, round(per_actor))}


def pca_basis(cfg: ExperimentConfig, plan: Plan, rows: pa.Table, staging: Path) -> dict | None:
    """The PCA basis for this build, fitted once and kept in the staging directory, so a resumed
    build projects with the very same basis."""
    if not plan.hidden_pca:
        return None
    path = staging / "pca.json"
    if path.exists():
        return json.loads(path.read_text())
    import ray

    init_ray(cfg.runtime)
    res = _resources(cfg)
    take = sample_indices(rows.num_rows, PCA_SAMPLE_SENTENCES, cfg.seed, "pca")
    task = ray.remote(fit_pca).options(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"],
                                       resources=cfg.transfer.resources_per_actor or None)
    basis = ray.get(task.remote(asdict(plan), rows.take(pa.array(take)), cfg.transfer.micro_batch,
                                cfg.transfer.fp16, res["threads"]))
    atomic_write_json(path, basis)
    log.info("transfer: PCA to %d dims keeps %.1f%% of the variance of layer %d", plan.hidden_pca,
             100 * basis["explained_variance_ratio"], plan.layer)
    return basis


def run_pipeline(cfg: ExperimentConfig, plan: Plan, pending: pa.Table, out_dir: Path, pca: dict | None) -> None:
    """Build shards for `pending` rows into out_dir with Ray Data."""
    import ray

    init_ray(cfg.runtime)
    res = _resources(cfg)
    log.info("transfer: %d sentences on %d actor(s) (%s)", pending.num_rows, res["actors"],
             f"{res['num_gpus']} GPU each" if res["num_gpus"] else f"{res['threads']} threads each")
    batch = cfg.transfer.batch_size
    # One input block per batch; no repartition, whose tasks would need a whole free CPU.
    ds = ray.data.from_arrow([pending.slice(i, batch) for i in range(0, pending.num_rows, batch)])
    ds = ds.map_batches(tokenize_batch, batch_format="pyarrow", batch_size=batch, num_cpus=0.25,
                        fn_kwargs={"teacher_dir": plan.teacher_dir, "max_length": plan.max_length})
    ds = ds.map_batches(
        TeacherPredictor, batch_format="pyarrow", batch_size=batch,
        compute=ray.data.ActorPoolStrategy(size=res["actors"]),
        num_gpus=res["num_gpus"], num_cpus=res["num_cpus"], resources=cfg.transfer.resources_per_actor or None,
        fn_constructor_kwargs={"plan": asdict(plan), "out_dir": str(out_dir), "micro_batch": cfg.transfer.micro_batch,
                               "fp16": cfg.transfer.fp16, "threads": res["threads"], "pca": pca})
    # Ray Data restarts a dead actor and retries its batch (max_restarts / max_task_retries = -1 by
    # default for actor pools); the shard name makes the retry overwrite, never duplicate.
    for _ in ds.iter_batches(batch_size=None):
        pass  # shards are written by the actors; the driver only drives the stream


def _deduplicate(directory: Path, shards: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop rows whose uid is already in an earlier shard (possible only if batches were re-cut
    between a killed run and its resume); rewrites just the affected shards."""
    seen: set[int] = set()
    for name in sorted(shards):
        uids = shards[name]
        dup = np.array([u in seen for u in uids.tolist()], dtype=bool)
        seen.update(uids.tolist())
        if dup.any():
            path = directory / name
            table = pq.read_table(path).filter(pa.array(~dup))
            path.unlink()
            if table.num_rows:
                new = shard_name(table.column("uid").to_numpy())
                write_shard(table, directory / new)
            log.warning("transfer: removed %d duplicate rows from %s", int(dup.sum()), name)
    return scan_shards(directory)


def finalize(directory: Path, plan: Plan, fingerprint: str, expected_rows: int, cfg: ExperimentConfig) -> dict:
    """Check every uid is present exactly once, then write the manifest (last); the PCA basis,
    where there is one, goes into the manifest."""
    shards = _deduplicate(directory, scan_shards(directory))
    uids = np.concatenate(list(shards.values())) if shards else np.zeros(0, np.int64)
    if len(uids) != expected_rows or len(np.unique(uids)) != expected_rows or (
            expected_rows and (uids.min() != 0 or uids.max() != expected_rows - 1)):
        raise TransferSetError(f"transfer: {directory} holds {len(np.unique(uids))} distinct uids, "
                               f"expected 0..{expected_rows - 1}; rerun `xdray transfer` to resume")
    files, tokens, digest = [], 0, 0
    for name in sorted(shards):
        table = pq.read_table(directory / name)
        n_tokens = int(pc.sum(table.column("length")).as_py())
        files.append({"file": name, "rows": table.num_rows, "tokens": n_tokens})
        tokens += n_tokens
        digest = (digest + rows_digest(table)) % 2**64
    manifest = {
        "schema_version": SCHEMA_VERSION, "fingerprint": fingerprint, **asdict(plan), "hidden_dim": plan.hidden_dim,
        "config_layer": cfg.transfer.layer, "rows": expected_rows, "tokens": tokens, "files": files,
        "rows_digest": f"{digest:016x}", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "complete": True,
    }
    manifest.pop("teacher_dir")
    if plan.hidden_pca:
        manifest["pca"] = json.loads((directory / "pca.json").read_text())
    atomic_write_json(directory / MANIFEST, manifest)
    return manifest


def read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("complete") else None


def check_existing(final: Path, plan: Plan) -> dict:
    """The manifest of a finished set, after checking it is this plan's and its shards are whole:
    a damaged set is reported here, not halfway through a trial."""
    from xdray.transfer_reader import TransferSet

    expect = {"teacher_fingerprint": plan.teacher_fingerprint, "layer": plan.layer, "data_fingerprint": plan.data_fingerprint}
    try:
        return TransferSet(final, expect=expect).manifest
    except TransferSetError as err:
        raise TransferSetError(f"{err}; delete {final} and rerun `xdray transfer` to rebuild it") from None


def build_transfer_set(cfg: ExperimentConfig, run_dir: Path, teacher_dir: Path, teacher_fingerprint: str,
                       labelled: LabelledData) -> TransferOutput:
    """Build (or resume, or skip) the transfer set for this teacher, data and layer."""
    rows, data_fp = unlabelled_table(cfg, labelled)
    return build_from_rows(cfg, run_dir, teacher_dir, teacher_fingerprint, rows, data_fp)


def build_from_rows(cfg: ExperimentConfig, run_dir: Path, teacher_dir: Path, teacher_fingerprint: str,
                    rows: pa.Table, data_fp: str) -> TransferOutput:
    """The transfer set of `rows` (uid 0..N-1, lang, tokens) under run_dir/transfer/<fingerprint>."""
    plan = make_plan(cfg, teacher_dir, teacher_fingerprint, data_fp)
    fingerprint = plan_fingerprint(plan)
    final = run_dir / "transfer" / fingerprint
    storage.pull(run_dir, f"transfer/{fingerprint}")
    if read_manifest(final) is not None:
        manifest = check_existing(final, plan)
        log.info("transfer: %s is complete (%d rows); skipping", final, manifest["rows"])
        return TransferOutput(final, fingerprint, manifest, skipped=True)
    staging = run_dir / "transfer" / f"{fingerprint}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    done = scan_shards(staging)
    done_uids = np.concatenate(list(done.values())) if done else np.zeros(0, np.int64)
    pending = rows.filter(pa.array(~np.isin(rows.column("uid").to_numpy(), done_uids)))
    if done:
        log.info("transfer: resuming: %d of %d sentences already in %d shards", rows.num_rows - pending.num_rows,
                 rows.num_rows, len(done))
    started = time.time()
    pca = pca_basis(cfg, plan, rows, staging)
    if pending.num_rows:
        run_pipeline(cfg, plan, pending, staging, pca)
    manifest = finalize(staging, plan, fingerprint, rows.num_rows, cfg)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    storage.push(run_dir, f"transfer/{fingerprint}")
    log.info("transfer: %d sentences, %d tokens in %s (%.0fs)", manifest["rows"], manifest["tokens"], final,
             time.time() - started)
    return TransferOutput(final, fingerprint, manifest, skipped=False)
