"""Transfer set: Ray Data build, exactness under faults, resume, skip, and the streaming reader."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from conftest import SENTENCES, built_raw, labelled_of, tiny_raw
from xdray.config import load_experiment
from xdray.core import faults
from xdray.transfer.build import CRASH_POINT
from xdray.transfer.format import MANIFEST, TransferSetError, schema
from xdray.pipeline import transfer_settings
from xdray.transfer.stage import build_transfer_set, unlabelled_table
from xdray.transfer.reader import TransferSet



def experiment(write_experiment, **transfer):
    cfg = load_experiment(write_experiment(built_raw(**transfer)))
    return cfg, labelled_of(cfg)


@pytest.fixture(scope="module")
def built(tiny_built):
    return tiny_built


def all_uids(path):
    return np.concatenate([pq.read_table(p, columns=["uid"]).column("uid").to_numpy() for p in path.glob("shard-*.parquet")])


def test_manifest_and_every_uid_exactly_once(built):
    cfg, data, teacher, out = built
    m = out.manifest
    rows = 3 * SENTENCES
    assert m["complete"] and m["rows"] == rows and m["teacher_fingerprint"] == teacher.fingerprint
    assert m["layer"] == 1 and m["num_labels"] == 7 and m["hidden_size"] == 32 and m["store_hidden"]
    assert len(m["files"]) >= rows // 64 and sum(f["rows"] for f in m["files"]) == rows
    assert sorted(all_uids(out.path).tolist()) == list(range(rows))
    assert not out.path.with_name(out.path.name + ".partial").exists()
    first = pq.read_table(out.path / m["files"][0]["file"])
    assert first.schema.equals(schema(True))
    length = first.column("length")[0].as_py()
    assert len(first.column("logits")[0]) == length * 7 and len(first.column("hidden")[0]) == length * 32
    size = sum((out.path / f["file"]).stat().st_size for f in m["files"])
    assert size / m["tokens"] <= 2 * (7 + 32) + 16, "fp16, no padding stored"


def test_reader_gives_back_the_teachers_own_outputs(built):
    cfg, data, teacher, out = built
    model = AutoModelForTokenClassification.from_pretrained(teacher.path).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher.path)
    table, _ = unlabelled_table(transfer_settings(cfg), data)
    ts = TransferSet(out.path, expect={"teacher_fingerprint": teacher.fingerprint, "layer": 1})
    rows = {r[0]: r for split in ("train", "heldout") for r in ts.iter_rows(split, 0.1)}
    assert sorted(rows) == list(range(ts.rows))
    for uid in (0, 1, 137, ts.rows - 1):
        _, lang, ids, logits, hidden = rows[uid]
        tokens = table.column("tokens")[uid].as_py()
        expected_ids = tokenizer(tokens, is_split_into_words=True, truncation=True, max_length=cfg.data.max_length)["input_ids"]
        assert ids.tolist() == expected_ids and lang == table.column("lang")[uid].as_py()
        with torch.inference_mode():
            direct = model(input_ids=torch.tensor([expected_ids]), output_hidden_states=True)
        np.testing.assert_allclose(logits.astype(np.float32), direct.logits[0].numpy(), rtol=1e-2, atol=1e-2)
        np.testing.assert_allclose(hidden.astype(np.float32), direct.hidden_states[1][0].numpy(), rtol=1e-2, atol=1e-2)


def test_second_run_is_a_fast_noop(built):
    cfg, data, teacher, out = built
    started = time.time()
    again = build_transfer_set(transfer_settings(cfg), out.path.parents[1], teacher.path, teacher.fingerprint, data)
    assert again.skipped and again.manifest == out.manifest
    assert time.time() - started < 10


def partial_copy(out, run_dir, keep_every=2):
    """A build interrupted half-way: some shards, no manifest."""
    partial = run_dir / "transfer" / f"{out.fingerprint}.partial"
    shutil.copytree(out.path, partial)
    (partial / MANIFEST).unlink()
    for shard in sorted(partial.glob("shard-*.parquet"))[::keep_every]:
        shard.unlink()
    (partial / ".tmp-shard-half-written").write_bytes(b"PAR1 garbage")
    return partial


def test_resume_with_a_killed_actor_gives_the_same_rows(built, tmp_path):
    cfg, data, teacher, out = built
    partial = partial_copy(out, tmp_path / "run")
    faults.arm(partial, CRASH_POINT)  # the first actor to take a batch dies abruptly
    resumed = build_transfer_set(transfer_settings(cfg), tmp_path / "run", teacher.path, teacher.fingerprint, data)
    assert not (resumed.path / faults.MARKER).exists(), "the actor must have been killed"
    assert sorted(all_uids(resumed.path).tolist()) == list(range(3 * SENTENCES))
    assert resumed.manifest["rows_digest"] == out.manifest["rows_digest"]
    assert not list(resumed.path.glob(".tmp-*"))


DRIVER = """
import sys
from pathlib import Path
from xdray.config import load_experiment
from xdray.data.sources import load_labelled
from xdray.pipeline import transfer_settings
from xdray.transfer.stage import build_transfer_set
cfg = load_experiment(sys.argv[1])
build_transfer_set(transfer_settings(cfg), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4],
                   load_labelled(cfg.data, cfg.base_dir))
"""


@pytest.mark.slow
def test_driver_killed_mid_build_then_rerun(built, tmp_path, write_experiment, ray_local):
    cfg, data, teacher, out = built
    big_raw = tiny_raw(data__labelled__train_per_language=200, teacher__finetune={"epochs": 0},
                       transfer={"layer": -1, "batch_size": 16, "micro_batch": 1})
    path = write_experiment(big_raw, "big.yaml")
    big_cfg, big_data = load_experiment(path), None
    run = tmp_path / "run"
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(path), str(run), str(teacher.path), teacher.fingerprint],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(run.glob("transfer/*.partial/shard-*.parquet")):
        assert proc.poll() is None, "the build ended before it could be interrupted"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = next(run.glob("transfer/*.partial"))
    done_before = len(list(partial.glob("shard-*.parquet")))
    assert not (partial / MANIFEST).exists() and done_before >= 1
    big_data = labelled_of(big_cfg)
    resumed = build_transfer_set(transfer_settings(big_cfg), run, teacher.path, teacher.fingerprint, big_data)
    assert sorted(all_uids(resumed.path).tolist()) == list(range(3 * 200))
    assert resumed.manifest["rows"] == 3 * 200


@pytest.fixture
def damaged(built, tmp_path):
    def copy():
        target = tmp_path / "copy"
        shutil.copytree(built[3].path, target)
        return target, json.loads((target / MANIFEST).read_text())
    return copy


def test_reader_refuses_bad_sets(built, damaged, tmp_path):
    cfg, data, teacher, out = built
    with pytest.raises(TransferSetError, match="has no manifest"):
        TransferSet(tmp_path / "nothing")
    with pytest.raises(TransferSetError, match="teacher_fingerprint is '.*', expected 'other'"):
        TransferSet(out.path, expect={"teacher_fingerprint": "other"})
    with pytest.raises(TransferSetError, match="layer is 1, expected 3"):
        TransferSet(out.path, expect={"layer": 3})

    path, manifest = damaged()
    manifest["complete"] = False
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(TransferSetError, match="is incomplete"):
        TransferSet(path)


@pytest.mark.parametrize("damage, fragment", [
    ("truncate", "is unreadable"), ("delete", "is missing"), ("schema", "has schema"), ("version", "schema version"),
])
def test_reader_refuses_damaged_shards(damaged, damage, fragment):
    path, manifest = damaged()
    shard = path / manifest["files"][0]["file"]
    if damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:100])
    elif damage == "delete":
        shard.unlink()
    elif damage == "schema":
        pq.write_table(pq.read_table(shard).drop_columns(["hidden"]), shard)
    else:
        manifest["schema_version"] = 99
        (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(TransferSetError, match=fragment):
        TransferSet(path)


def test_batches_cover_train_once_shuffled_and_bucketed(built):
    ts = TransferSet(built[3].path)
    def epoch(e, seed=0):
        return list(ts.batches(8, epoch=e, seed=seed, shuffle_buffer=64, heldout_fraction=0.1))
    first = epoch(0)
    train = [u for b in first for u in b.uid.tolist()]
    heldout = [u for b in ts.batches(8, split="heldout", heldout_fraction=0.1) for u in b.uid.tolist()]
    assert len(train) == len(set(train)) and heldout and not set(train) & set(heldout)
    assert sorted(train + heldout) == list(range(ts.rows))
    assert [b.uid.tolist() for b in epoch(0)] == [b.uid.tolist() for b in first], "same seed and epoch, same order"
    assert train != [u for b in epoch(1) for u in b.uid.tolist()], "another epoch, another order"
    batch = first[0]
    assert batch.input_ids.shape == batch.mask.shape and batch.logits.shape[:2] == batch.mask.shape
    assert batch.hidden.shape[-1] == 32 and (batch.input_ids[~batch.mask] == 0).all()
    padding = sum(int(b.mask.numel() - b.mask.sum()) for b in first) / sum(b.tokens for b in first)
    assert padding < 0.1, f"length bucketing should leave little padding, got {padding:.2f}"


def scaled_copy(src, dst, factor):
    """A transfer set `factor` times larger: the same shards repeated under new uids."""
    dst.mkdir()
    manifest = json.loads((src / MANIFEST).read_text())
    files = []
    for k in range(factor):
        for f in manifest["files"]:
            table = pq.read_table(src / f["file"])
            uids = pa.array(table.column("uid").to_numpy() + k * manifest["rows"])
            table = table.set_column(0, "uid", uids)
            name = f"shard-{k}-{f['file'][6:]}"
            pq.write_table(table, dst / name, row_group_size=256)
            files.append({**f, "file": name})
    (dst / MANIFEST).write_text(json.dumps({**manifest, "files": files, "rows": manifest["rows"] * factor}))


def peak_reading(path):
    ts = TransferSet(path)
    tracemalloc.start()
    count = sum(b.uid.numel() for b in ts.batches(16, shuffle_buffer=128, bucket_batches=4))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return count, peak


def test_reader_memory_does_not_grow_with_the_set(built, tmp_path):
    scaled_copy(built[3].path, tmp_path / "x1", 1)
    scaled_copy(built[3].path, tmp_path / "x10", 10)
    rows1, peak1 = peak_reading(tmp_path / "x1")
    rows10, peak10 = peak_reading(tmp_path / "x10")
    assert rows10 > 9 * rows1
    assert peak10 < 1.5 * peak1, f"peak {peak10} bytes on 10x the rows vs {peak1}"


def test_hidden_pca_stores_projections_and_the_basis(built, tmp_path, write_experiment):
    cfg, data, teacher, out = built
    cfg_pca, data_pca = experiment(write_experiment, hidden_pca=8)
    result = build_transfer_set(transfer_settings(cfg_pca), tmp_path / "run", teacher.path, teacher.fingerprint, data_pca)
    assert result.fingerprint != out.fingerprint
    m = result.manifest
    assert m["hidden_dim"] == 8 and m["hidden_size"] == 32
    mean, components = np.array(m["pca"]["mean"]), np.array(m["pca"]["components"])
    assert components.shape == (8, 32) and 0 < m["pca"]["explained_variance_ratio"] <= 1
    np.testing.assert_allclose(components @ components.T, np.eye(8), atol=1e-4)  # orthonormal basis
    full = {r[0]: r for r in TransferSet(out.path).iter_rows("train", 0.0)}
    projected = {r[0]: r for r in TransferSet(result.path).iter_rows("train", 0.0)}
    for uid in (0, 5, 250):
        expected = (full[uid][4].astype(np.float64) - mean) @ components.T
        np.testing.assert_allclose(projected[uid][4].astype(np.float64), expected, rtol=2e-2, atol=2e-2)
    assert m["tokens"] == out.manifest["tokens"]
    size = lambda r: sum((r.path / f["file"]).stat().st_size for f in r.manifest["files"])
    assert size(result) < 0.6 * size(out)
