"""One trial end to end on the tiny pipeline: unfreezing, reports, checkpoints, resume, outputs."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from xdray.config import config_from_dict
from xdray.core.loader import config_to_dict
from xdray.distill.schedule import expand
from xdray.distill.loop import train_substage
from xdray.distill.trial import prepare as prepare_settings, train_student as train_settings
from xdray.pipeline import trial_settings


def prepare(cfg, *args, **kwargs):
    return prepare_settings(trial_settings(cfg), *args, **kwargs)


def run_trial(cfg, *args, **kwargs):
    return train_settings(trial_settings(cfg), *args, **kwargs)
from xdray.distill.saved import load_student

FAST_STAGES = [
    {"name": "representation", "loss": "rep", "unfreeze": "all", "max_epochs": 2, "patience": 1},
    {"name": "logits", "loss": "logit", "unfreeze": "gradual", "max_epochs": 1},
    {"name": "labels", "loss": "ce", "unfreeze": "gradual", "max_epochs": 2, "patience": 1},
]


def fast(cfg, stages=FAST_STAGES, **student):
    raw = config_to_dict(cfg)
    raw["distill"]["stages"] = stages
    raw["student"].update({"embedding_dim": 16, "hidden_size": 16, **student})
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def td(tiny_built):
    cfg, data, teacher, transfer = tiny_built
    return prepare(cfg, teacher.path, transfer.path, data)


def test_each_sub_stage_trains_exactly_its_groups(tiny_built, td):
    from xdray.distill.trial import build_student

    cfg = fast(tiny_built[0])
    student = build_student(trial_settings(cfg), td)
    plan = expand(cfg.distill.stages)
    for index in (1, 2, 4):  # logits/1, logits/2, logits/4
        sub = plan[index]
        before = {n: p.detach().clone() for n, p in student.named_parameters()}
        train_substage(student, td, trial_settings(cfg).loop, sub, index)
        changed = {n.split(".")[0] for n, p in student.named_parameters() if not torch.equal(p, before[n])}
        assert changed == set(sub.trainable), sub.name


def test_trial_reports_checkpoints_and_saves(tiny_built, td, tmp_path):
    cfg = fast(tiny_built[0])
    reports = []
    final = run_trial(cfg, tmp_path / "trial", td, report=reports.append)
    assert [r["substage"] for r in reports] == [s.name for s in expand(cfg.distill.stages)]
    for r in reports:
        assert {"stage", "epochs", "train_loss", "heldout_loss", "lr", "dev_f1_mean", "dev_f1_en"} <= set(r)
    assert set(final) >= {"dev", "test", "params", "history"} and final["params"] > 0
    saved = json.loads((tmp_path / "trial" / "metrics.json").read_text())
    assert saved["dev"]["f1_mean"] == final["dev"]["f1_mean"]
    student, vocab, labels, tokenizer = load_student(tmp_path / "trial" / "student")
    assert labels == list(td.labels) and len(vocab) == len(td.vocab)
    for sub, record in zip(reports, saved["history"]):  # the curves the report's TensorBoard view draws
        assert [set(p) for p in record["curve"]] == [{"train_loss", "heldout_loss", "lr"}] * sub["epochs"]
    assert not (tmp_path / "trial" / "tensorboard").exists(), "live events are dropped once the record is kept"


class Crash(Exception):
    pass


def test_resume_mid_plan_gives_the_same_result(tiny_built, td, tmp_path):
    cfg = fast(tiny_built[0])
    whole = run_trial(cfg, tmp_path / "whole", td, tensorboard=False)

    def crash_after_three(metrics):
        if metrics["substage_index"] == 3:
            raise Crash()

    with pytest.raises(Crash):
        run_trial(cfg, tmp_path / "resumed", td, report=crash_after_three)
    live = EventAccumulator(str(tmp_path / "resumed" / "tensorboard"))  # what a user watches while it trains
    live.Reload()
    assert {"representation/1/train_loss", "logits/1/lr"} <= set(live.Tags()["scalars"])
    assert [e.step for e in live.Scalars("dev/f1_mean")] == [1, 2, 3]
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["done"] == 3
    seen = []
    resumed = run_trial(cfg, tmp_path / "resumed", td, report=seen.append, tensorboard=False)
    assert [r["substage_index"] for r in seen] == list(range(4, len(expand(cfg.distill.stages)) + 1))
    assert resumed["dev"] == whole["dev"] and resumed["test"] == whole["test"]
    a, _, _, _ = load_student(tmp_path / "whole" / "student")
    b, _, _, _ = load_student(tmp_path / "resumed" / "student")
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name


def test_the_seed_alone_changes_the_student(tiny_built, td, tmp_path):
    """Same teacher, same transfer set: seed 0 twice gives equal weights, seed 1 other ones."""
    stages = [{"name": "logits", "loss": "logit", "unfreeze": "all", "max_epochs": 1}]
    weights = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = fast(tiny_built[0], stages=stages)
        cfg = config_from_dict({**config_to_dict(cfg), "seed": seed})
        run_trial(cfg, tmp_path / name, td, tensorboard=False)
        weights[name] = load_student(tmp_path / name / "student")[0].state_dict()
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not all(torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])


def test_labels_only_plan_needs_no_transfer_set(tiny_built, tmp_path):
    cfg, data, teacher, _ = tiny_built
    cfg = fast(cfg, stages=[{"name": "labels", "loss": "ce", "unfreeze": "all", "max_epochs": 2}], init="random")
    final = run_trial(cfg, tmp_path / "labels", prepare(cfg, teacher.path, None, data), tensorboard=False)
    assert [h["substage"] for h in final["history"]] == ["labels/1"]
