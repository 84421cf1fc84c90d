"""Shared fixtures: a small local Ray cluster, tiny experiment configs, the real PAN-X data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xdray.core.loader import apply_overrides

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray Train's controller polls its workers every 2 s, and a report or the end of a run waits for
# the next poll: a tiny fine-tune spends 10-15 s of its 30 waiting. Every cluster the tests start
# (and the processes in it) inherits this; real runs, hours long, keep Ray's default.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")

REPO = Path(__file__).resolve().parents[1]
PANX = REPO.parent / "shared" / "data" / "panx"


def xdray(*args, env=None, cwd=None, input_text=None) -> subprocess.CompletedProcess:
    """`python -m xdray ARGS` as a user runs it; `env` adds to (or overrides) this environment."""
    return subprocess.run([sys.executable, "-m", "xdray", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd or REPO, timeout=600, input=input_text)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray cluster for the whole test session: 2 CPUs, its dashboard (which Ray Train's
    controller polls) on a free 127.0.0.1 port; as init_ray does, RAY_ADDRESS's cluster where set."""
    import ray

    from xdray.core.runtime import RuntimeConfig
    from xdray.core.runtime import init_ray

    init_ray(RuntimeConfig(num_cpus=2, progress="off"))
    yield ray
    ray.shutdown()


@pytest.fixture
def panx_dir() -> Path:
    if not PANX.is_dir():
        pytest.skip("../shared/data/panx is absent")
    return PANX


def tiny_raw(**sections) -> dict:
    """A synthetic experiment small enough to fine-tune in seconds; sections override deeply."""
    raw = {
        "name": "tiny",
        "seed": 0,
        "data": {"max_length": 24, "labelled": {"source": "synthetic", "languages": ["en", "ru", "hi"],
                                                 "train_per_language": 60, "dev_per_language": 20,
                                                 "test_per_language": 20}},
        "teacher": {"init": "build",
                    "build": {"vocab_size": 600, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                              "intermediate_size": 64, "max_position": 32},
                    "finetune": {"epochs": 1, "batch_size": 16, "lr": 1e-3}},
        "transfer": {"layer": -1, "batch_size": 64},
        "runtime": {"progress": "off"},
    }
    return apply_overrides(raw, {key.replace("__", "."): value for key, value in sections.items()})


def labelled_of(cfg):
    """The experiment's labelled data, read from its data section."""
    from xdray.data.sources import load_labelled

    return load_labelled(cfg.data, cfg.base_dir)


def unlabelled_of(cfg, data):
    """The experiment's unlabelled text, read from its data section."""
    from xdray.data.sources import load_unlabelled

    return load_unlabelled(cfg.data.unlabelled, cfg.base_dir, cfg.seed, data)


@pytest.fixture
def write_experiment(tmp_path):
    """write_experiment(raw) -> path of a YAML experiment file in tmp_path."""

    def write(raw: dict, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        return path

    return write


SENTENCES = 100  # per language in tiny_built, three languages


def built_raw(**transfer) -> dict:
    return tiny_raw(data__labelled__train_per_language=SENTENCES, teacher__finetune={"epochs": 0},
                    transfer={"layer": -1, "batch_size": 64, "micro_batch": 16, **transfer})


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory, ray_local):
    """(cfg, labelled data, teacher, transfer set): a random-weight teacher (exactness does not
    need a trained one) and its transfer set, built once per test session."""
    from xdray.config import load_experiment
    from xdray.pipeline import labelled_data, teacher_settings, transfer_settings
    from xdray.teacher.stage import run_teacher_stage
    from xdray.transfer.stage import build_transfer_set

    root = tmp_path_factory.mktemp("built")
    (root / "exp.yaml").write_text(yaml.safe_dump(built_raw()))
    cfg, data = labelled_data(load_experiment(root / "exp.yaml"))  # labels resolved, as a run has them
    teacher = run_teacher_stage(teacher_settings(cfg), data, root / "run")
    return cfg, data, teacher, build_transfer_set(transfer_settings(cfg), root / "run", teacher.path, teacher.fingerprint, data)
