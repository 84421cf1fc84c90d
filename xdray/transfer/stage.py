"""The transfer stage: teacher logits and hidden states for unlabelled text, built once.

Output: RUN/transfer/<fingerprint>/, the fingerprint covering the teacher's weights, the data,
the layer and what is stored (`TransferPlan`). Shards go to `<fingerprint>.partial/` first; a
rerun after the driver died reads which uids are done and only builds the rest. The manifest is
written last and the runner publishes the directory: a reader never sees half a build.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xdray.core.errors import DataError, XdrayError
from xdray.core.files import atomic_write_json
from xdray.core.loader import digest
from xdray.core.rundir import TRANSFER_DIR
from xdray.core.runtime import RuntimeConfig
from xdray.core.stage import Stage, Work, run_stage
from xdray.data.schema import UnlabelledConfig
from xdray.data.sources import LabelledData, dataset_fingerprint, load_unlabelled, sample_indices
from xdray.transfer.build import pca_basis, run_pipeline
from xdray.transfer.format import (MANIFEST, SCHEMA_VERSION, TransferPlan, TransferSetError, read_manifest,
                                   resolve_layer, rows_digest, scan_shards, shard_name, write_shard)
from xdray.transfer.reader import TransferSet
from xdray.transfer.schema import TransferConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferSettings:
    """What the transfer stage reads of the experiment."""

    transfer: TransferConfig
    unlabelled: tuple[UnlabelledConfig, ...]  # data.unlabelled: the text the teacher labels
    base_dir: str  # the experiment file's folder: relative text paths resolve against it
    seed: int
    max_length: int  # data.max_length: sub-tokens a window
    runtime: RuntimeConfig  # the cluster the actors run on


@dataclass(frozen=True)
class TransferOutput:
    path: Path
    fingerprint: str
    manifest: dict[str, Any]
    skipped: bool


def unlabelled_table(s: TransferSettings, labelled: LabelledData) -> tuple[pa.Table, str]:
    """Rows (uid, lang, tokens) with stable uids, capped at transfer.max_sentences; and their
    fingerprint."""
    ds = load_unlabelled(s.unlabelled, s.base_dir, s.seed, labelled)
    cap = s.transfer.max_sentences
    if cap and len(ds) > cap:
        ds = ds.select(sample_indices(len(ds), cap, s.seed, "transfer"))
    if len(ds) == 0:
        raise DataError("data.unlabelled: no sentences for the transfer set")
    table = ds.with_format("arrow")[:]
    table = pa.table({"uid": pa.array(np.arange(len(ds), dtype=np.int64)),
                      "lang": table.column("lang"), "tokens": table.column("tokens")})
    return table, dataset_fingerprint(labelled.labels, {"unlabelled": ds})


def make_plan(s: TransferSettings, teacher_dir: Path, teacher_fingerprint: str, data_fp: str) -> TransferPlan:
    model_cfg = json.loads((teacher_dir / "config.json").read_text())
    store_hidden = s.transfer.hidden == "layer"
    pca = s.transfer.hidden_pca if store_hidden else 0
    if pca > model_cfg["hidden_size"]:
        raise XdrayError(f"transfer.hidden_pca: {pca} is more than the teacher's hidden size "
                         f"{model_cfg['hidden_size']}")
    return TransferPlan(teacher_dir=str(teacher_dir), teacher_fingerprint=teacher_fingerprint,
                        layer=resolve_layer(s.transfer.layer, model_cfg["num_hidden_layers"]),
                        store_hidden=store_hidden, max_length=s.max_length,
                        num_labels=len(model_cfg["id2label"]), hidden_size=model_cfg["hidden_size"],
                        data_fingerprint=data_fp, hidden_pca=pca)


def plan_fingerprint(plan: TransferPlan) -> str:
    content = {k: v for k, v in asdict(plan).items() if k != "teacher_dir"}
    content["schema_version"] = SCHEMA_VERSION
    return digest(content)


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


def finalize(directory: Path, plan: TransferPlan, fingerprint: str, expected_rows: int, config_layer: int) -> dict:
    """Check every uid is present exactly once, then write the manifest (last); the PCA basis,
    where there is one, goes into the manifest."""
    shards = _deduplicate(directory, scan_shards(directory))
    uids = np.concatenate(list(shards.values())) if shards else np.zeros(0, np.int64)
    if len(uids) != expected_rows or len(np.unique(uids)) != expected_rows or (
            expected_rows and (uids.min() != 0 or uids.max() != expected_rows - 1)):
        raise TransferSetError(f"transfer: {directory} holds {len(np.unique(uids))} distinct uids, "
                               f"expected 0..{expected_rows - 1}; rerun `xdray transfer` to resume")
    files, tokens, total = [], 0, 0
    for name in sorted(shards):
        table = pq.read_table(directory / name)
        n_tokens = int(pc.sum(table.column("length")).as_py())
        files.append({"file": name, "rows": table.num_rows, "tokens": n_tokens})
        tokens += n_tokens
        total = (total + rows_digest(table)) % 2**64
    manifest = {
        "schema_version": SCHEMA_VERSION, "fingerprint": fingerprint, **asdict(plan), "hidden_dim": plan.hidden_dim,
        "config_layer": config_layer, "rows": expected_rows, "tokens": tokens, "files": files,
        "rows_digest": f"{total:016x}", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "complete": True,
    }
    manifest.pop("teacher_dir")
    if plan.hidden_pca:
        manifest["pca"] = json.loads((directory / "pca.json").read_text())
    atomic_write_json(directory / MANIFEST, manifest)
    return manifest


def check_existing(final: Path, plan: TransferPlan) -> dict:
    """The manifest of a finished set, after checking it is this plan's and its shards are whole:
    a damaged set is reported here, not halfway through a trial."""
    expect = {"teacher_fingerprint": plan.teacher_fingerprint, "layer": plan.layer, "data_fingerprint": plan.data_fingerprint}
    try:
        return TransferSet(final, expect=expect).manifest
    except TransferSetError as err:
        raise TransferSetError(f"{err}; delete {final} and rerun `xdray transfer` to rebuild it") from None


def build_transfer_set(s: TransferSettings, run_dir: Path, teacher_dir: Path, teacher_fingerprint: str,
                       labelled: LabelledData) -> TransferOutput:
    """Build (or resume, or skip) the transfer set for this teacher, data and layer."""
    rows, data_fp = unlabelled_table(s, labelled)
    return build_from_rows(s, run_dir, teacher_dir, teacher_fingerprint, rows, data_fp)


def build_into(s: TransferSettings, plan: TransferPlan, fingerprint: str, rows: pa.Table, work: Work) -> None:
    """The stage body: shards for the rows not yet in work.staging (a resumed build keeps the
    finished ones), then the manifest, last."""
    staging = work.staging
    done = scan_shards(staging)
    done_uids = np.concatenate(list(done.values())) if done else np.zeros(0, np.int64)
    pending = rows.filter(pa.array(~np.isin(rows.column("uid").to_numpy(), done_uids)))
    if done:
        log.info("transfer: resuming: %d of %d sentences already in %d shards", rows.num_rows - pending.num_rows,
                 rows.num_rows, len(done))
    started = time.time()
    pca = pca_basis(s.transfer, s.runtime, s.seed, plan, rows, staging)
    if pending.num_rows:
        run_pipeline(s.transfer, s.runtime, plan, pending, staging, pca)
    manifest = finalize(staging, plan, fingerprint, rows.num_rows, s.transfer.layer)
    log.info("transfer: %d sentences, %d tokens (%.0fs)", manifest["rows"], manifest["tokens"], time.time() - started)


def _summary(out: TransferOutput) -> str:
    m = out.manifest
    size = sum((out.path / f["file"]).stat().st_size for f in m["files"])
    return (f"{m['rows']} sentences, {m['tokens']} tokens, {len(m['files'])} shards, "
            f"{size / max(m['tokens'], 1):.0f} bytes/token")


def transfer_stage(s: TransferSettings, plan: TransferPlan, rows: pa.Table) -> Stage[TransferOutput]:
    fingerprint = plan_fingerprint(plan)

    def load(path: Path) -> TransferOutput | None:
        if read_manifest(path) is None:  # a damaged one is an error: rebuilding means teacher inference again
            return None
        return TransferOutput(path, fingerprint, check_existing(path, plan), skipped=True)

    return Stage(name="transfer", output=f"{TRANSFER_DIR}/{fingerprint}", load=load, resumable=True,
                 build=lambda work: build_into(s, plan, fingerprint, rows, work), summary=_summary)


def build_from_rows(s: TransferSettings, run_dir: Path, teacher_dir: Path, teacher_fingerprint: str,
                    rows: pa.Table, data_fp: str) -> TransferOutput:
    """The transfer set of `rows` (uid 0..N-1, lang, tokens) under run_dir/transfer/<fingerprint>."""
    done = run_stage(run_dir, transfer_stage(s, make_plan(s, teacher_dir, teacher_fingerprint, data_fp), rows))
    return TransferOutput(done.path, done.value.fingerprint, done.value.manifest, skipped=done.skipped)
