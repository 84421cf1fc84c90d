"""Same config and seed, same bytes: two runs from scratch into separate run directories give an
identical teacher, byte-identical transfer-set rows and identical trial metrics on CPU; another
seed changes the teacher (so the comparison can fail; a student's own seed is checked in
test_trial). The command line on a cluster is test_job_submit's; cached reruns are test_cluster's."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import tiny_raw
from xdray.cli import main
from xdray.transfer.format import rows_digest


def without_times(value):
    """Metrics minus wall-clock entries, the only thing allowed to differ between runs."""
    if isinstance(value, dict):
        return {k: without_times(v) for k, v in value.items() if "time" not in k and not k.endswith("_s")}
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def experiment(tmp_path: Path, name: str, seed: int) -> Path:
    raw = tiny_raw(seed=seed, teacher__finetune={"epochs": 1, "batch_size": 16, "lr": 1e-3},
                   distill={"stages": [{"name": "representation", "loss": "rep", "unfreeze": "all", "max_epochs": 1},
                                       {"name": "logits", "loss": "logit", "unfreeze": "gradual", "max_epochs": 1},
                                       {"name": "labels", "loss": "ce", "unfreeze": "all", "max_epochs": 1}]})
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return exp


def run(tmp_path: Path, name: str, seed: int, command: str = "train") -> Path:
    out = tmp_path / name
    assert main([command, str(experiment(tmp_path, name, seed)), "--out", str(out)]) == 0
    return out


def fingerprints(out: Path) -> dict:
    found = {
        "teacher": json.loads((out / "teacher" / "fingerprint.json").read_text())["fingerprint"],
        "teacher_metrics": without_times(json.loads((out / "teacher" / "metrics.json").read_text())),
    }
    if (out / "transfer").exists():  # `xdray teacher` stops before it
        (transfer,) = (out / "transfer").iterdir()
        manifest = json.loads((transfer / "manifest.json").read_text())
        recomputed = sum(rows_digest(pq.read_table(transfer / f["file"])) for f in manifest["files"]) % 2**64
        found.update(rows_digest=manifest["rows_digest"], rows_digest_recomputed=f"{recomputed:016x}")
    if (out / "train").exists():
        (student,) = (out / "train").iterdir()
        found["student_weights"] = (student / "student" / "model.safetensors").read_bytes()
        found["student_metrics"] = without_times(json.loads((student / "metrics.json").read_text()))
    return found


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(tmp_path, ray_local):
    first_dir = run(tmp_path, "first", 0)
    first = fingerprints(first_dir)
    second = fingerprints(run(tmp_path, "second", 0))
    other = fingerprints(run(tmp_path, "other", 1, command="teacher"))
    assert first["rows_digest"] == first["rows_digest_recomputed"]  # the manifest tells the truth
    for key in first:
        assert first[key] == second[key], key
    (student,) = (first_dir / "train").iterdir()  # `xdray train` keeps its student's curves with it
    events = EventAccumulator(str(student / "tensorboard"))
    events.Reload()
    plan = json.loads((student / "metrics.json").read_text())["history"]
    assert [e.step for e in events.Scalars("dev/f1_mean")] == list(range(1, len(plan) + 1))
    history = first["teacher_metrics"]["history"]  # the teacher's curve in the report's TensorBoard view
    assert [h["epoch"] for h in history] == [1] and set(history[0]["per_language"]) == {"en", "ru", "hi"}
    assert "student_weights" in first
    for key in ("teacher", "teacher_metrics"):
        assert first[key] != other[key], key
