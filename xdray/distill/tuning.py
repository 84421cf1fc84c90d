"""Ray Tune driver: one trial per point of the search space, each running the whole stage plan.

Every trial is a stage (`trial.trial_stage`) whose output is RUN/trials/<key>/, where the key
names the student's shape and a hash of every setting that changes its training. A finished trial
returns at once, so re-running an experiment only trains what is missing. Each finished sub-stage
is reported to Tune and checkpointed in RUN/trials/<key>.partial/checkpoint/; a failed trial is
retried (`search.max_failures`) and continues from there, and `xdray tune --resume` continues an
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

import itertools
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdray.config import ExperimentConfig, config_from_dict
from xdray.core import store
from xdray.core.errors import ConfigError, XdrayError
from xdray.core.loader import apply_overrides, config_to_dict
from xdray.core.metrics import DEV_F1
from xdray.core.records import StudyIndex, TrialResult, read_index as read_index_file, write_index
from xdray.core.rundir import MAIN_INDEX, TEACHER_DIR, TUNE_DIR, study_path, trial_dir
from xdray.core.stage import Stage, Work, run_stage
from xdray.distill.keys import transfer_key, trial_key
from xdray.distill.schedule import expand
from xdray.distill.schema import SchedulerConfig
from xdray.distill.space import SearchSpace, SpaceEntry, describe, short_name
from xdray.distill.loop import TRANSFER_LOSSES
from xdray.distill.trial import TrialSettings

log = logging.getLogger(__name__)


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


def trial_settings(cfg: ExperimentConfig) -> TrialSettings:
    """The sections of the experiment a trial reads."""
    return TrialSettings(cfg.student, cfg.distill, cfg.seed, cfg.data.max_length, cfg.search.gpus_per_trial,
                         max(1, int(cfg.search.cpus_per_trial)))


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


@dataclass(frozen=True)
class StudyInputs:
    """What every trial needs from the driver (small, so it travels with the trainable)."""

    base: dict
    run_dir: str  # the local copy of the run directory (the same path on every node)
    teacher_dir: str
    transfers: dict  # transfer_key -> transfer-set path
    remote: str | None = None  # the run directory on storage, where there is one


# ----------------------------------------------------------------------------- the trainable


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def tune_trainable(params: dict, inputs: StudyInputs) -> None:
    """Tune's function trainable: train (or resume, or just re-report) one grid point."""
    import ray
    from ray import tune

    from xdray.core.runtime import configure_logging, seed_everything
    from xdray.data.sources import load_labelled
    from xdray.distill.trial import prepare, trial_stage

    cfg = trial_config(inputs.base, params)
    # Sub-stage progress lines reach the driver's log through Ray's log forwarding; the driver has
    # already reported the encoding warnings once, so trials do not repeat them.
    configure_logging()
    logging.getLogger("xdray.data.encode").setLevel(logging.ERROR)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    seed_everything(cfg.seed)
    key = trial_key(cfg)
    run_dir = Path(inputs.run_dir)
    substages = len(expand(cfg.distill.stages))
    transfer = inputs.transfers.get(transfer_key(cfg)) if needs_transfer(cfg) else None
    if inputs.remote:  # a node that may never have seen this run: it reads the trial from storage
        store.attach(run_dir, inputs.remote)

    def report(metrics: dict) -> None:
        tune.report({**_scalars(metrics), "trial_key": key, "done": False})

    def data():
        if inputs.remote:  # only a trial with something to train pulls the teacher and transfer set
            store.pull_many(run_dir, [TEACHER_DIR] + ([str(Path(transfer).relative_to(run_dir))] if transfer else []))
        settings = trial_settings(cfg)
        return prepare(settings, Path(inputs.teacher_dir), Path(transfer) if transfer else None, load_labelled(cfg))

    final = run_stage(run_dir, trial_stage(trial_settings(cfg), trial_dir(key), data, report)).value
    tune.report({"trial_key": key, "done": True, "substage_index": substages, "substages": substages,
                 DEV_F1: final["dev"]["f1_mean"], "params": final["params"],
                 "node_id": ray.get_runtime_context().get_node_id()})


# ----------------------------------------------------------------------------- the driver


def needs_transfer(cfg: ExperimentConfig) -> bool:
    return any(stage.loss in TRANSFER_LOSSES for stage in cfg.distill.stages)


def _trial_name(trial) -> str:
    short = {"student.embedding_dim": "E", "student.hidden_size": "H"}
    parts = [f"{short[k]}{v}" if k in short else f"{short_name(k)}={describe(v)}" for k, v in sorted(trial.config.items())]
    return "-".join(parts).replace("/", "_").replace(">", "_").replace("*", "g") or "trial"


def asha_scheduler(spec: SchedulerConfig | None, substages: int):
    if spec is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="substage_index", metric=spec.metric, mode="max", max_t=substages,
                         grace_period=min(spec.grace_period, substages), reduction_factor=spec.reduction_factor)


def _trainable(cfg: ExperimentConfig, inputs: StudyInputs):
    from ray import tune

    resources = {"cpu": cfg.search.cpus_per_trial, "gpu": cfg.search.gpus_per_trial, **cfg.search.resources_per_trial}
    return tune.with_resources(tune.with_parameters(tune_trainable, inputs=inputs), resources)


def _tuner(cfg: ExperimentConfig, space: SearchSpace, inputs: StudyInputs, verbose: int, experiment: str):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from xdray.distill.schedule import expand

    storage, name = experiment.rsplit("/", 1)
    run_config = tune.RunConfig(
        # result.json only (the auto loggers are off, see _study_tuner): without it Tune's closing
        # analysis warns "Failed to fetch metrics" for every trial of every study
        name=name, storage_path=storage, verbose=verbose, callbacks=[JsonLoggerCallback()],
        failure_config=tune.FailureConfig(max_failures=cfg.search.max_failures))
    tune_config = tune.TuneConfig(
        max_concurrent_trials=cfg.search.max_concurrent_trials or None, trial_name_creator=_trial_name,
        trial_dirname_creator=lambda trial: f"{_trial_name(trial)}-{trial.trial_id}", scheduler=asha_scheduler(space.scheduler, len(expand(cfg.distill.stages))))
    return tune.Tuner(_trainable(cfg, inputs), param_space=tune_param_space(space.entries),
                      tune_config=tune_config, run_config=run_config)


def _study_tuner(cfg: ExperimentConfig, space: SearchSpace, run_dir: Path, teacher_dir: Path,
                 transfers: dict[str, Path], resume: bool, progress: bool, study: str | None):
    """A new Tuner over the space, or (resume) the interrupted one restored."""
    from ray import tune

    from xdray.core.runtime import init_ray

    init_ray(cfg.runtime)
    # Tune's own CSV / JSON / TensorBoard loggers add a run per trial to `tensorboard --logdir RUN`
    # with every hyperparameter and metric empty; xdray keeps its records in trials/ and report/.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    inputs = StudyInputs(config_to_dict(cfg), str(run_dir), str(teacher_dir),
                         {k: str(v) for k, v in transfers.items()}, store.remote_of(run_dir))
    # RUN/tune for the experiment's own study, RUN/studies/<name>/tune for another: two studies of
    # one run directory, run at once or one after the other, neither wipe nor resume each other's.
    experiment = f"{inputs.remote or inputs.run_dir}/{study_path(study, TUNE_DIR)}"
    if resume:
        if not tune.Tuner.can_restore(experiment):
            raise XdrayError(f"{experiment}: no Tune experiment to resume; run without --resume to start one")
        tuner = tune.Tuner.restore(experiment, trainable=_trainable(cfg, inputs), resume_errored=True)
    else:
        if not inputs.remote:  # Tune's records only: finished trials live in trials/
            shutil.rmtree(experiment, ignore_errors=True)
        tuner = _tuner(cfg, space, inputs, verbose=1 if progress else 0, experiment=experiment)
    return tuner


def run_tune_study(cfg: ExperimentConfig, space: SearchSpace, run_dir: Path, teacher_dir: Path,
                   transfers: dict[str, Path], resume: bool = False, progress: bool = False,
                   study: str | None = None) -> list[TrialResult]:
    """Run (or, with resume, continue) the Tune experiment as a stage whose output is the study's
    index (RUN/trials/index.json for the experiment's own study): its trials and searched keys.
    `transfers`: transfer_key -> transfer set, one per variant."""
    base = config_to_dict(cfg)

    def build(work: Work) -> None:
        results = [_result(base, r) for r in _study_tuner(cfg, space, run_dir, teacher_dir, transfers, resume,
                                                          progress, study).fit()]
        write_index(work.staging, StudyIndex(results, list(space.keys)))

    stage = Stage(name="tune", output=study_path(study, MAIN_INDEX), load=read_index_file, build=build,
                  cached=False)
    return run_stage(run_dir, stage).value.trials


def _result(base: dict, result) -> TrialResult:
    params = {k: v for k, v in (result.config or {}).items()}
    key = trial_key(trial_config(base, params))
    if result.error is not None:
        return TrialResult(key, params, "error", f"{type(result.error).__name__}: {result.error}"[:2000])
    metrics = result.metrics or {}
    return TrialResult(key, params, "done" if metrics.get("done") else "stopped", node_id=metrics.get("node_id"))


def read_index(run_dir: Path, study: str | None = None) -> StudyIndex:
    """The study's trials and searched keys."""
    path = run_dir / study_path(study, MAIN_INDEX)
    index = read_index_file(path)
    if index is None:
        raise XdrayError(f"{path}: no trials yet; run `xdray tune` (or `xdray run`) first")
    return index
