"""Same config and seed, same bytes: two runs from scratch into separate run directories give an
identical teacher, byte-identical transfer-set rows and identical trial metrics on CPU; another
seed changes the teacher (so the comparison can fail; a student's own seed is checked in
test_trial). The command line on a cluster is test_job_submit's; cached reruns are test_cluster's.
The first run's teacher is also the suite's check of a Ray Train fine-tune's output (test_teacher
checks the stage itself on a teacher that is not fine-tuned)."""

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


def experiment(tmp_path: Path, name: str, seed: int, epochs: int = 5) -> Path:
    raw = tiny_raw(seed=seed, teacher__finetune={"epochs": epochs, "batch_size": 16, "lr": 3e-3},
                   distill={"stages": [{"name": "representation", "loss": "rep", "unfreeze": "all", "max_epochs": 1},
                                       {"name": "logits", "loss": "logit", "unfreeze": "gradual", "max_epochs": 1},
                                       {"name": "labels", "loss": "ce", "unfreeze": "all", "max_epochs": 1}]})
    exp = tmp_path / f"{name}.yaml"
    exp.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return exp


def run(tmp_path: Path, name: str, seed: int, command: str = "train", epochs: int = 5) -> Path:
    out = tmp_path / name
    assert main([command, str(experiment(tmp_path, name, seed, epochs)), "--out", str(out)]) == 0
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


@pytest.fixture(scope="module")
def twice(tmp_path_factory, ray_local):
    """(first run directory, its fingerprints, the second run's): `xdray train` twice from scratch,
    same config and seed, the teacher fine-tuned on Ray Train (5 epochs at 3e-3: it learns)."""
    root = tmp_path_factory.mktemp("determinism")
    first_dir = run(root, "first", 0)
    return first_dir, fingerprints(first_dir), fingerprints(run(root, "second", 0))


@pytest.mark.slow
def test_same_seed_same_bytes(twice):
    first_dir, first, second = twice
    assert first["rows_digest"] == first["rows_digest_recomputed"]  # the manifest tells the truth
    for key in first:
        assert first[key] == second[key], key
    (student,) = (first_dir / "train").iterdir()  # `xdray train` keeps its student's curves with it
    events = EventAccumulator(str(student / "tensorboard"))
    events.Reload()
    plan = json.loads((student / "metrics.json").read_text())["history"]
    assert [e.step for e in events.Scalars("dev/f1_mean")] == list(range(1, len(plan) + 1))
    history = first["teacher_metrics"]["history"]  # the teacher's curve in the report's TensorBoard view
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert all(set(h["per_language"]) == {"en", "ru", "hi"} for h in history)
    assert "student_weights" in first


@pytest.mark.slow
def test_the_fine_tuned_teacher_is_saved_as_its_metrics_describe(twice):
    """Ray Train's fine-tune, published: safetensors and no pickles, its metrics, its fingerprint,
    nothing of its staging or scratch left in the run directory, and the saved model scores what
    its metrics say."""
    from transformers import AutoModelForTokenClassification

    from xdray.config import load_experiment
    from xdray.pipeline import labelled_data
    from xdray.teacher.load import evaluate_teacher, load_tokenizer
    from xdray.teacher.stage import encode_splits, weights_fingerprint

    first_dir, first, _ = twice
    teacher = first_dir / "teacher"
    files = {p.name for p in teacher.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "fingerprint.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    assert {p.name for p in first_dir.iterdir()} == {"config.yaml", "teacher", "transfer", "train"}
    metrics = json.loads((teacher / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert set(metrics[split]) >= {"f1_mean", "f1_std", "f1_micro", "per_language"}
        assert set(metrics[split]["per_language"]) == {"en", "ru", "hi"}
    assert metrics["dev"]["f1_mean"] > 0.1, "five epochs on the synthetic data must learn something"
    assert first["teacher"] == weights_fingerprint(teacher)

    cfg, data = labelled_data(load_experiment(first_dir.parent / "first.yaml"))
    model = AutoModelForTokenClassification.from_pretrained(teacher)
    dev = encode_splits(load_tokenizer(str(teacher)), data, cfg.data.max_length)["dev"]
    assert evaluate_teacher(model, dev, data.labels)["f1_mean"] == pytest.approx(metrics["dev"]["f1_mean"])


def test_another_seed_gives_another_teacher(tmp_path):
    """Without fine-tuning (no Ray needed): the seed alone changes the weights and their scores."""
    same = fingerprints(run(tmp_path, "seed0", 0, command="teacher", epochs=0))
    other = fingerprints(run(tmp_path, "seed1", 1, command="teacher", epochs=0))
    for key in ("teacher", "teacher_metrics"):
        assert same[key] != other[key], key
