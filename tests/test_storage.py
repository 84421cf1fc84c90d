"""Run directories on storage reached through pyarrow filesystems. Offline, a file:// "bucket"
with XDRAY_STAGE_FILE_URIS=1 takes the same path an s3:// or gs:// URI takes: stages work in a
local copy and meet only through storage."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tiny_raw
from xdray.core import store as storage


@pytest.fixture
def staged(monkeypatch):
    monkeypatch.setenv("XDRAY_STAGE_FILE_URIS", "1")


def test_push_and_pull_round_trip(tmp_path, staged):
    bucket = tmp_path / "bucket"
    uri = f"file://{bucket}/run"
    assert storage.is_remote(uri) and not storage.is_remote(str(tmp_path))
    one = tmp_path / "node-a"
    storage.attach(one, uri)
    (one / "teacher").mkdir()
    (one / "teacher" / "model.safetensors").write_bytes(b"weights")
    (one / "teacher" / "sub").mkdir()
    (one / "teacher" / "sub" / "x.json").write_text("{}")
    (one / "config.yaml").write_text("name: run\n")
    storage.push(one, "teacher")
    storage.push(one, "config.yaml")
    assert (bucket / "run" / "teacher" / storage.COMPLETE).exists()

    two = tmp_path / "node-b"
    storage.attach(two, uri)
    assert storage.pull(two, "teacher") and storage.pull(two, "config.yaml")
    assert (two / "teacher" / "model.safetensors").read_bytes() == b"weights"
    assert (two / "teacher" / "sub" / "x.json").exists() and not (two / "teacher" / storage.COMPLETE).exists()
    assert not storage.pull(two, "nothing-here")

    # A directory whose push never finished is not taken.
    (bucket / "run" / "trials" / "half").mkdir(parents=True)
    (bucket / "run" / "trials" / "half" / "state.json").write_text("{}")
    assert not storage.pull(two, "trials/half")
    # refresh replaces a stale local copy.
    (one / "teacher" / "model.safetensors").write_bytes(b"newer")
    storage.push(one, "teacher")
    assert storage.pull(two, "teacher", refresh=True)
    assert (two / "teacher" / "model.safetensors").read_bytes() == b"newer"


def test_local_paths_are_used_in_place(tmp_path):
    assert storage.remote_of(tmp_path) is None
    storage.push(tmp_path, "anything")  # no-op
    assert not storage.pull(tmp_path, "anything")


def xdray(*args, env):
    return subprocess.run([sys.executable, "-m", "xdray", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **env}, timeout=900)


@pytest.mark.slow
def test_stages_meet_only_through_storage(tmp_path, ray_local):
    bucket = tmp_path / "bucket"
    raw = tiny_raw(teacher__finetune={"epochs": 0})
    raw.update(student={"embedding_dim": 16, "hidden_size": 16},
               distill={"stages": [{"name": "logits", "loss": "logit", "unfreeze": "all", "max_epochs": 1},
                                   {"name": "labels", "loss": "ce", "unfreeze": "all", "max_epochs": 1}]},
               report={"min_retention": 0.01})
    raw["runtime"]["storage_path"] = f"file://{bucket}"
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    env = {"XDRAY_STAGE_FILE_URIS": "1", "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address}

    first = xdray("run", tmp_path / "exp.yaml", env={**env, "XDRAY_CACHE": str(tmp_path / "cache-a")})
    assert first.returncode == 0, first.stderr[-4000:]
    remote = bucket / "tiny"
    for part in ("config.yaml", "teacher/model.safetensors", "trials/index.json", "eval/latency.json",
                 "report/frontier.csv", "tune"):
        assert (remote / part).exists(), part
    assert list(remote.glob("transfer/*/manifest.json"))
    (trial,) = json.loads((remote / "trials" / "index.json").read_text())["trials"]
    assert (remote / "trials" / trial["key"] / "student" / "model.safetensors").exists()
    assert (remote / "trials" / trial["key"] / storage.COMPLETE).exists()
    finished = (remote / "trials" / trial["key"] / "metrics.json").read_bytes()

    # Another machine, an empty cache: everything comes from storage, nothing is trained again.
    shutil.rmtree(tmp_path / "cache-a")
    second = xdray("run", tmp_path / "exp.yaml", env={**env, "XDRAY_CACHE": str(tmp_path / "cache-b")})
    assert second.returncode == 0, second.stderr[-4000:]
    assert "teacher (cached)" in second.stdout and "transfer (cached)" in second.stdout
    assert (remote / "trials" / trial["key"] / "metrics.json").read_bytes() == finished
    local = tmp_path / "cache-b" / "runs" / "tiny"
    assert (local / "trials" / trial["key"] / "metrics.json").read_bytes() == finished
