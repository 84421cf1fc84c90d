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

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xdray.core import store
from xdray.core.errors import XdrayError
from xdray.core.metrics import DEV_F1
from xdray.core.records import StudyIndex, TrialResult, read_index as read_index_file, write_index
from xdray.core.rundir import MAIN_INDEX, TEACHER_DIR, TUNE_DIR, study_path, trial_dir
from xdray.core.runtime import RuntimeConfig
from xdray.core.stage import Stage, Work, run_stage
from xdray.data.sources import LabelledData
from xdray.distill.schedule import expand
from xdray.distill.schema import DistillConfig, SchedulerConfig, SearchConfig
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


@dataclass(frozen=True)
class TrialPlan:
    """One point of the search space as its trial needs it. The pipeline works it out from the
    experiment with the point's values applied: only it sees the whole experiment."""

    key: str  # RUN/trials/<key>: the student's shape and a hash of what changes its training
    settings: TrialSettings
    transfer_key: str | None  # the transfer set the trial learns from; None where its plan needs none

    @property
    def substages(self) -> int:
        return len(expand(self.settings.distill.stages))


@dataclass(frozen=True)
class StudySettings:
    """What the Tune driver reads of the experiment: the search section, the cluster, and how to
    turn a point of the space into a trial (`plan_of`, given the point's values; `plan_of({})` is
    the experiment's own point) and load the labelled data in a trial."""

    search: SearchConfig
    runtime: RuntimeConfig
    plan_of: Callable[[dict], TrialPlan]
    labelled: Callable[[], LabelledData]


@dataclass(frozen=True)
class StudyInputs:
    """What every trial needs from the driver (small, so it travels with the trainable)."""

    plan_of: Callable[[dict], TrialPlan]
    labelled: Callable[[], LabelledData]
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
    from xdray.distill.trial import prepare, trial_stage

    plan = inputs.plan_of(params)
    # Sub-stage progress lines reach the driver's log through Ray's log forwarding; the driver has
    # already reported the encoding warnings once, so trials do not repeat them.
    configure_logging()
    logging.getLogger("xdray.data.encode").setLevel(logging.ERROR)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    seed_everything(plan.settings.seed)
    key, substages = plan.key, plan.substages
    run_dir = Path(inputs.run_dir)
    transfer = inputs.transfers.get(plan.transfer_key) if plan.transfer_key else None
    if inputs.remote:  # a node that may never have seen this run: it reads the trial from storage
        store.attach(run_dir, inputs.remote)

    def report(metrics: dict) -> None:
        tune.report({**_scalars(metrics), "trial_key": key, "done": False})

    def data():
        if inputs.remote:  # only a trial with something to train pulls the teacher and transfer set
            store.pull_many(run_dir, [TEACHER_DIR] + ([str(Path(transfer).relative_to(run_dir))] if transfer else []))
        return prepare(plan.settings, Path(inputs.teacher_dir), Path(transfer) if transfer else None, inputs.labelled())

    final = run_stage(run_dir, trial_stage(plan.settings, trial_dir(key), data, report)).value
    tune.report({"trial_key": key, "done": True, "substage_index": substages, "substages": substages,
                 DEV_F1: final["dev"]["f1_mean"], "params": final["params"],
                 "node_id": ray.get_runtime_context().get_node_id()})


# ----------------------------------------------------------------------------- the driver


def needs_transfer(distill: DistillConfig) -> bool:
    return any(stage.loss in TRANSFER_LOSSES for stage in distill.stages)


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


def _trainable(search: SearchConfig, inputs: StudyInputs):
    from ray import tune

    resources = {"cpu": search.cpus_per_trial, "gpu": search.gpus_per_trial, **search.resources_per_trial}
    return tune.with_resources(tune.with_parameters(tune_trainable, inputs=inputs), resources)


def _tuner(s: StudySettings, space: SearchSpace, inputs: StudyInputs, verbose: int, experiment: str):
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    storage, name = experiment.rsplit("/", 1)
    run_config = tune.RunConfig(
        # result.json only (the auto loggers are off, see _study_tuner): without it Tune's closing
        # analysis warns "Failed to fetch metrics" for every trial of every study
        name=name, storage_path=storage, verbose=verbose, callbacks=[JsonLoggerCallback()],
        failure_config=tune.FailureConfig(max_failures=s.search.max_failures))
    tune_config = tune.TuneConfig(
        max_concurrent_trials=s.search.max_concurrent_trials or None, trial_name_creator=_trial_name,
        trial_dirname_creator=lambda trial: f"{_trial_name(trial)}-{trial.trial_id}",
        scheduler=asha_scheduler(space.scheduler, s.plan_of({}).substages))
    return tune.Tuner(_trainable(s.search, inputs), param_space=tune_param_space(space.entries),
                      tune_config=tune_config, run_config=run_config)


def _study_tuner(s: StudySettings, space: SearchSpace, run_dir: Path, teacher_dir: Path,
                 transfers: dict[str, Path], resume: bool, progress: bool, study: str | None):
    """A new Tuner over the space, or (resume) the interrupted one restored."""
    from ray import tune

    from xdray.core.runtime import init_ray

    init_ray(s.runtime)
    # Tune's own CSV / JSON / TensorBoard loggers add a run per trial to `tensorboard --logdir RUN`
    # with every hyperparameter and metric empty; xdray keeps its records in trials/ and report/.
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Ctrl-C stops the study at once (KeyboardInterrupt): Tune's own handler would end the trials
    # and return as if the study were over; the trials' checkpoints resume on the next run.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    if not progress:  # the legacy reporter at verbose 0 prints nothing; the new one still draws its header box
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    inputs = StudyInputs(s.plan_of, s.labelled, str(run_dir), str(teacher_dir),
                         {k: str(v) for k, v in transfers.items()}, store.remote_of(run_dir))
    # RUN/tune for the experiment's own study, RUN/studies/<name>/tune for another: two studies of
    # one run directory, run at once or one after the other, neither wipe nor resume each other's.
    experiment = f"{inputs.remote or inputs.run_dir}/{study_path(study, TUNE_DIR)}"
    if resume:
        if not tune.Tuner.can_restore(experiment):
            raise XdrayError(f"{experiment}: no Tune experiment to resume; run without --resume to start one")
        tuner = tune.Tuner.restore(experiment, trainable=_trainable(s.search, inputs), resume_errored=True)
    else:
        if not inputs.remote:  # Tune's records only: finished trials live in trials/
            shutil.rmtree(experiment, ignore_errors=True)
        tuner = _tuner(s, space, inputs, verbose=1 if progress else 0, experiment=experiment)
    return tuner


def run_tune_study(s: StudySettings, space: SearchSpace, run_dir: Path, teacher_dir: Path,
                   transfers: dict[str, Path], resume: bool = False, progress: bool = False,
                   study: str | None = None) -> list[TrialResult]:
    """Run (or, with resume, continue) the Tune experiment as a stage whose output is the study's
    index (RUN/trials/index.json for the experiment's own study): its trials and searched keys.
    `transfers`: transfer_key -> transfer set, one per variant."""

    def build(work: Work) -> None:
        results = [_result(s.plan_of, r) for r in _study_tuner(s, space, run_dir, teacher_dir, transfers, resume,
                                                          progress, study).fit()]
        write_index(work.staging, StudyIndex(results, list(space.keys)))

    stage = Stage(name="tune", output=study_path(study, MAIN_INDEX), load=read_index_file, build=build,
                  cached=False)
    return run_stage(run_dir, stage).value.trials


def _result(plan_of: Callable[[dict], TrialPlan], result) -> TrialResult:
    params = {k: v for k, v in (result.config or {}).items()}
    key = plan_of(params).key
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
