"""Ray Tune driver: one trial per point of the search space, each running the whole stage plan.

Every trial writes its outputs to RUN/trials/<key>/, where the key names the student's shape and
a hash of every setting that changes its training. A finished trial (metrics.json present)
returns at once, so re-running an experiment only trains what is missing. Each finished sub-stage
is reported to Tune and checkpointed in RUN/trials/<key>/checkpoint/; a failed trial is retried
(`search.max_failures`) and continues from there, and `xdray tune --resume` continues an
interrupted experiment with `Tuner.restore`. Tune's own records live in RUN/tune/;
RUN/trials/index.json lists the trials of the experiment's own study for the report; a study over
another space file (an ablation) gets RUN/studies/<file stem>/ for its index, latency and report,
while its trials share RUN/trials/ (a trial already trained for one study is reused by the next).

Why the checkpoints are not handed to Tune: with `CheckpointConfig(num_to_keep=k)`, a driver
killed between Tune deleting an old checkpoint and snapshotting its state leaves a state that
points at the deleted one, and the restored trial then fails on every retry (found by the resume
test). The trial's own checkpoint is published atomically and is always the latest.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdray import storage
from xdray.config import (ExperimentConfig, SchedulerConfig, SearchSpace, SpaceEntry, apply_overrides,
                          config_from_dict, config_to_dict)
from xdray.errors import ConfigError, XdrayError
from xdray.runtime import atomic_write_json

log = logging.getLogger(__name__)

TRIALS_DIR, TUNE_DIR, INDEX_FILE, STUDIES_DIR = "trials", "tune", "index.json", "studies"
MAIN_INDEX = f"{TRIALS_DIR}/{INDEX_FILE}"

# Config sections that decide what a trial trains; the rest (search, eval, report, runtime) do not,
# and neither do these placement settings of the transfer build.
TRIAL_SECTIONS = ("seed", "data", "teacher", "transfer", "student", "distill")
PLACEMENT = {"transfer": ("actors", "batch_size", "micro_batch", "resources_per_actor")}
# Settings added after runs existed, with the default that reproduces the old behaviour: a trial at
# that default keeps the key it had before the setting existed, so its results are reused.
ADDED_SETTINGS = {"student": {"rep_projection": "gelu"}}
KILL_MARKER = ".xdray-kill-after-substage"  # see _fail_if_asked


def study_path(run_dir: Path, study: str | None, main: str) -> Path:
    """A study's file: RUN/<main> for the experiment's own study, RUN/studies/<study>/<basename>
    for a named one (e.g. main="eval/latency.json" -> RUN/studies/stages/latency.json)."""
    return run_dir / main if study is None else run_dir / STUDIES_DIR / study / Path(main).name


def tune_param_space(entries: tuple[SpaceEntry, ...] | list[SpaceEntry]) -> dict[str, Any]:
    """Search-space entries -> a Tuner param_space of ray.tune domains on dotted keys."""
    from ray import tune

    build = {
        "grid_search": lambda v: tune.grid_search(list(v)),
        "choice": lambda v: tune.choice(list(v)),
        "uniform": lambda v: tune.uniform(*v),
        "loguniform": lambda v: tune.loguniform(*v),
        "randint": lambda v: tune.randint(*v),
    }
    return {entry.key: build[entry.domain](entry.values) for entry in entries}


def trial_config(base: dict, params: dict) -> ExperimentConfig:
    """The experiment (as config_to_dict gives it) with one trial's values applied."""
    return config_from_dict(apply_overrides(base, params), "trial")


def describe(value: Any) -> Any:
    """A searched value as a short scalar for names, tables and HParams: a stage plan becomes
    e.g. "rep>logit*>ce*" (* = gradual unfreezing)."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) and "loss" in v for v in value):
            return ">".join(v["loss"] + ("*" if v.get("unfreeze") == "gradual" else "") for v in value)
        return ",".join(str(describe(v)) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def short_name(key: str) -> str:
    """student.embedding_dim -> embedding_dim: the column name of a searched key."""
    return key.split(".")[-1]


def transfer_key(cfg: ExperimentConfig) -> str:
    """Which transfer set a trial reads: a hash of its transfer settings."""
    return hashlib.sha256(json.dumps(config_to_dict(cfg.transfer), sort_keys=True).encode()).hexdigest()[:12]


def transfer_variants(cfg: ExperimentConfig, space: SearchSpace) -> list[ExperimentConfig]:
    """One config per combination of the space's transfer.* values: each needs its own transfer
    set, built before the trials start (the teacher-layer and transfer-size ablations)."""
    for entry in space.entries:
        section = entry.key.split(".")[0]
        if section in ("data", "teacher"):
            raise ConfigError(f"{space.path}: {entry.key}: the data and the teacher are built once per study, so "
                              f"{section}.* cannot vary per trial; run one study per {section} setting")
    varied = [e for e in space.entries if e.key.startswith("transfer.")]
    for entry in varied:
        if entry.domain not in ("grid_search", "choice"):
            raise ConfigError(f"{space.path}: {entry.key}: transfer settings need grid_search or choice (each value "
                              f"needs its own transfer set), got {entry.domain}")
    base = config_to_dict(cfg)
    combos = itertools.product(*(e.values for e in varied))
    return [trial_config(base, {e.key: v for e, v in zip(varied, combo)}) for combo in combos]


def trial_key(cfg: ExperimentConfig) -> str:
    """E<dim>-H<hidden>-<hash of every training setting>: stable across runs and machines."""
    settings = {name: config_to_dict(getattr(cfg, name)) for name in TRIAL_SECTIONS}
    for section, keys in PLACEMENT.items():
        settings[section] = {k: v for k, v in settings[section].items() if k not in keys}
    for section, defaults in ADDED_SETTINGS.items():
        settings[section] = {k: v for k, v in settings[section].items() if k not in defaults or defaults[k] != v}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return f"E{cfg.student.embedding_dim}-H{cfg.student.hidden_size}-{digest}"


@dataclass(frozen=True)
class StudyInputs:
    """What every trial needs from the driver (small, so it travels with the trainable)."""

    base: dict
    run_dir: str  # the local copy of the run directory (the same path on every node)
    teacher_dir: str
    transfers: dict  # transfer_key -> transfer-set path
    remote: str | None = None  # the run directory on storage, where there is one


def _sync_trial_inputs(inputs: StudyInputs, key: str, transfer: str | None) -> None:
    """On a node that may never have seen this run: pull the teacher, the trial's transfer set and
    the trial's own progress (storage is the truth: another node may have got further)."""
    run_dir = Path(inputs.run_dir)
    storage.attach(run_dir, inputs.remote)
    storage.pull(run_dir, "teacher")
    if transfer:
        storage.pull(run_dir, str(Path(transfer).relative_to(run_dir)))
    if not storage.pull(run_dir, f"{TRIALS_DIR}/{key}", refresh=True):
        storage.pull(run_dir, f"{TRIALS_DIR}/{key}/checkpoint", refresh=True)


# ----------------------------------------------------------------------------- the trainable


def _fail_if_asked(trial_dir: Path, substage: int) -> None:
    """Fault injection for tests: a trial directory holding KILL_MARKER with this sub-stage's
    number loses its process abruptly after that sub-stage (once: the marker goes first), as a
    preempted node or an OOM kill would."""
    marker = trial_dir / KILL_MARKER
    if marker.exists() and marker.read_text().strip() == str(substage):
        marker.unlink()
        os._exit(1)


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def run_one(params: dict, inputs: StudyInputs) -> None:
    """Tune's function trainable: train (or resume, or just re-report) one grid point."""
    import ray
    import torch
    from ray import tune

    from xdray.data.sources import load_labelled
    from xdray.distill.schedule import expand
    from xdray.distill.trial import prepare, run_trial
    from xdray.runtime import seed_everything

    cfg = trial_config(inputs.base, params)
    # Sub-stage progress lines reach the driver's log through Ray's log forwarding; the driver has
    # already reported the encoding warnings once, so trials do not repeat them.
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("xdray").setLevel(logging.INFO)
    logging.getLogger("xdray.data.encode").setLevel(logging.ERROR)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    torch.set_num_threads(max(1, int(cfg.search.cpus_per_trial)))
    seed_everything(cfg.seed)
    key = trial_key(cfg)
    run_dir = Path(inputs.run_dir)
    trial_dir = run_dir / TRIALS_DIR / key
    substages = len(expand(cfg.distill.stages))
    transfer = inputs.transfers.get(transfer_key(cfg)) if needs_transfer(cfg) else None
    if inputs.remote:
        _sync_trial_inputs(inputs, key, transfer)
    if not (trial_dir / "metrics.json").exists():
        td = prepare(cfg, Path(inputs.teacher_dir), Path(transfer) if transfer else None, load_labelled(cfg))

        def report(metrics: dict) -> None:
            storage.push(run_dir, f"{TRIALS_DIR}/{key}/checkpoint")
            tune.report({**_scalars(metrics), "trial_key": key, "done": False})
            _fail_if_asked(trial_dir, metrics["substage_index"])

        run_trial(cfg, trial_dir, td, report=report)  # resumes from trial_dir/checkpoint if there is one
        storage.push(run_dir, f"{TRIALS_DIR}/{key}")
    final = json.loads((trial_dir / "metrics.json").read_text())
    tune.report({"trial_key": key, "done": True, "substage_index": substages, "substages": substages,
                 "dev_f1_mean": final["dev"]["f1_mean"], "params": final["params"],
                 "node_id": ray.get_runtime_context().get_node_id()})


# ----------------------------------------------------------------------------- the driver


def needs_transfer(cfg: ExperimentConfig) -> bool:
    from xdray.distill.trial import TRANSFER_LOSSES

    return any(stage.loss in TRANSFER_LOSSES for stage in cfg.distill.stages)


def _trial_name(trial) -> str:
    short = {"student.embedding_dim": "E", "student.hidden_size": "H"}
    parts = [f"{short[k]}{v}" if k in short else f"{short_name(k)}={describe(v)}" for k, v in sorted(trial.config.items())]
    return "-".join(parts).replace("/", "_").replace(">", "_").replace("*", "g") or "trial"


def _scheduler(spec: SchedulerConfig | None, substages: int):
    if spec is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="substage_index", metric=spec.metric, mode="max", max_t=substages,
                         grace_period=min(spec.grace_period, substages), reduction_factor=spec.reduction_factor)


def _trainable(cfg: ExperimentConfig, inputs: StudyInputs):
    from ray import tune

    resources = {"cpu": cfg.search.cpus_per_trial, "gpu": cfg.search.gpus_per_trial, **cfg.search.resources_per_trial}
    return tune.with_resources(tune.with_parameters(run_one, inputs=inputs), resources)


def _tuner(cfg: ExperimentConfig, space: SearchSpace, inputs: StudyInputs, verbose: int):
    from ray import tune

    from xdray.distill.schedule import expand

    run_config = tune.RunConfig(
        name=TUNE_DIR, storage_path=inputs.remote or inputs.run_dir, verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures))
    tune_config = tune.TuneConfig(
        max_concurrent_trials=cfg.search.max_concurrent_trials or None, trial_name_creator=_trial_name,
        trial_dirname_creator=lambda trial: f"{_trial_name(trial)}-{trial.trial_id}", scheduler=_scheduler(space.scheduler, len(expand(cfg.distill.stages))))
    return tune.Tuner(_trainable(cfg, inputs), param_space=tune_param_space(space.entries),
                      tune_config=tune_config, run_config=run_config)


@dataclass(frozen=True)
class TrialResult:
    key: str
    params: dict
    status: str  # done | stopped | error
    error: str | None = None
    node_id: str | None = None  # the Ray node that finished it


def run_study(cfg: ExperimentConfig, space: SearchSpace, run_dir: Path, teacher_dir: Path,
              transfers: dict[str, Path], resume: bool = False, progress: bool = False,
              study: str | None = None) -> list[TrialResult]:
    """Run (or, with resume, continue) the Tune experiment; returns one result per trial and
    writes the study's index (RUN/trials/index.json for the experiment's own study).
    `transfers`: transfer_key -> transfer set, one per variant."""
    from ray import tune

    from xdray.runtime import init_ray

    init_ray(cfg.runtime)
    base = config_to_dict(cfg)
    inputs = StudyInputs(base, str(run_dir), str(teacher_dir), {k: str(v) for k, v in transfers.items()},
                         storage.remote_of(run_dir))
    experiment = f"{inputs.remote}/{TUNE_DIR}" if inputs.remote else str(run_dir / TUNE_DIR)
    if resume:
        if not tune.Tuner.can_restore(experiment):
            raise XdrayError(f"{experiment}: no Tune experiment to resume; run without --resume to start one")
        tuner = tune.Tuner.restore(experiment, trainable=_trainable(cfg, inputs), resume_errored=True)
    else:
        if not inputs.remote:  # Tune's records only: finished trials live in trials/
            shutil.rmtree(experiment, ignore_errors=True)
        tuner = _tuner(cfg, space, inputs, verbose=1 if progress else 0)
    grid = tuner.fit()
    results = [_result(base, r) for r in grid]
    index = study_path(run_dir, study, MAIN_INDEX)
    atomic_write_json(index, {"space": list(space.keys), "trials": [r.__dict__ for r in results]})
    storage.push(run_dir, str(index.relative_to(run_dir)))
    for result in results:  # finished trials' outputs, for the report on this node
        storage.pull(run_dir, f"{TRIALS_DIR}/{result.key}", refresh=True)
    return results


def _result(base: dict, result) -> TrialResult:
    params = {k: v for k, v in (result.config or {}).items()}
    key = trial_key(trial_config(base, params))
    if result.error is not None:
        return TrialResult(key, params, "error", f"{type(result.error).__name__}: {result.error}"[:2000])
    metrics = result.metrics or {}
    return TrialResult(key, params, "done" if metrics.get("done") else "stopped", node_id=metrics.get("node_id"))


def read_index(run_dir: Path, study: str | None = None) -> tuple[list[TrialResult], list[str]]:
    """The study's trials and searched keys."""
    path = study_path(run_dir, study, MAIN_INDEX)
    if not path.exists():
        raise XdrayError(f"{path}: no trials yet; run `xdray tune` (or `xdray run`) first")
    index = json.loads(path.read_text())
    return [TrialResult(**t) for t in index["trials"]], index["space"]
