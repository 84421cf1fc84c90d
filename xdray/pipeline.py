"""The pipeline, stage after stage: data -> teacher -> transfer -> trials (Tune) -> latency ->
report -> export. Each stage goes through the runner (`xdray.core.stage`), which skips it when its
output is current, so running an experiment again resumes it. The CLI's commands call these."""

from __future__ import annotations

import itertools
import logging
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from xdray.config import ExperimentConfig, config_from_dict, dump_config, load_run_config, load_search_space, with_labels
from xdray.core import store
from xdray.core.errors import ConfigError, XdrayError
from xdray.core.rundir import (CONFIG_FILE, MAIN_INDEX, MAIN_LATENCY, MAIN_REPORT, STUDIES_DIR, TEACHER_DIR,
                               TRAIN_DIR, TUNE_DIR, prepare_run_directory, run_directory, save_run_config,
                               study_path, trial_dir)
from xdray.core.runtime import progress_enabled, seed_everything
from xdray.core.stage import run_stage
from xdray.core.loader import apply_overrides, config_to_dict
from xdray.data.sources import LabelledData, check_unlabelled, load_labelled
from xdray.distill.keys import transfer_key, trial_key
from xdray.distill.space import SearchSpace
from xdray.distill.trial import TrialSettings
from xdray.distill.tuning import StudySettings, TrialPlan, needs_transfer, read_index, run_tune_study
from xdray.teacher.stage import TeacherOutput, TeacherSettings, run_teacher_stage
from xdray.transfer.stage import TransferOutput, TransferSettings, build_transfer_set

log = logging.getLogger("xdray")


# ----------------------------------------------------------------------------- each stage's sections
# The one place that sees the whole experiment: each stage gets the sections it reads.


def teacher_settings(cfg: ExperimentConfig) -> TeacherSettings:
    return TeacherSettings(cfg.teacher, cfg.base_dir, cfg.seed, cfg.data.max_length, cfg.runtime)


def transfer_settings(cfg: ExperimentConfig) -> TransferSettings:
    return TransferSettings(cfg.transfer, tuple(cfg.data.unlabelled), cfg.base_dir, cfg.seed, cfg.data.max_length,
                            cfg.runtime)


def trial_settings(cfg: ExperimentConfig) -> TrialSettings:
    return TrialSettings(cfg.student, cfg.distill, cfg.seed, cfg.data.max_length, cfg.search.gpus_per_trial,
                         max(1, int(cfg.search.cpus_per_trial)))


def trial_config(base: dict, params: dict) -> ExperimentConfig:
    """The experiment (as config_to_dict gives it) with one trial's values applied."""
    return config_from_dict(apply_overrides(base, params), "trial")


def trial_plan(base: dict, params: dict) -> TrialPlan:
    """One point of the search space: its key, its trial's sections and its transfer set."""
    cfg = trial_config(base, params)
    return TrialPlan(trial_key(cfg), trial_settings(cfg), transfer_key(cfg) if needs_transfer(cfg.distill) else None)


def study_settings(cfg: ExperimentConfig) -> StudySettings:
    """The Tune driver's sections; a trial loads the labelled data as the driver did (labels resolved)."""
    return StudySettings(cfg.search, cfg.runtime, partial(trial_plan, config_to_dict(cfg)),
                         partial(load_labelled, cfg.data, cfg.base_dir))


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


# ----------------------------------------------------------------------------- the stages


@dataclass
class Context:
    """What every stage command starts from: the config, the run directory, the labelled data."""

    cfg: ExperimentConfig
    run_dir: Path
    data: LabelledData


def context(cfg: ExperimentConfig, out: str | None, unlabelled: bool = True) -> Context:
    """Data and run directory. Every data file is read first (the unlabelled text too, unless the
    command builds no transfer set): bad data fails before anything is written, not after an hour
    of teacher fine-tuning."""
    seed_everything(cfg.seed)
    cfg, data = labelled_data(cfg)
    if unlabelled:
        check_unlabelled(cfg.data.unlabelled, cfg.base_dir, data)
    run_dir = run_directory(cfg.name, cfg.runtime.storage_path, out)
    prepare_run_directory(run_dir, cfg.name, cfg.runtime.storage_path)
    log.info("data %s: %s sentences over %d languages", data.fingerprint,
             ", ".join(f"{split} {len(ds)}" for split, ds in data.splits.items()), len(data.languages))
    return Context(cfg, run_dir, data)


def labelled_data(cfg: ExperimentConfig) -> tuple[ExperimentConfig, LabelledData]:
    """The labelled data, and the experiment with its label list resolved: a fine-tuned
    teacher's labels where teacher.init is finetuned, else data.labels, else the data's own."""
    required = None
    if cfg.teacher.init == "finetuned":
        from xdray.teacher.load import checkpoint_labels

        required = checkpoint_labels(cfg.teacher, cfg.base_dir)
    data = load_labelled(cfg.data, cfg.base_dir, required, f"teacher.model {cfg.teacher.model!r}")
    return with_labels(cfg, data.labels), data


def teacher(ctx: Context) -> TeacherOutput:
    result = run_teacher_stage(teacher_settings(ctx.cfg), ctx.data, ctx.run_dir, progress_enabled(ctx.cfg.runtime.progress))
    save_run_config(ctx.run_dir, dump_config(ctx.cfg))  # only once the data and the teacher are known good
    return result


def transfer(ctx: Context, t: TeacherOutput) -> TransferOutput:
    return build_transfer_set(transfer_settings(ctx.cfg), ctx.run_dir, t.path, t.fingerprint, ctx.data)


def train_one(ctx: Context) -> tuple[dict, TeacherOutput]:
    """One student through the whole plan, without Tune, in RUN/train/<key> (named by its key, so a
    changed setting never resumes another's checkpoint)."""
    from xdray.distill.trial import prepare, trial_stage

    t = teacher(ctx)
    tr = transfer(ctx, t) if needs_transfer(ctx.cfg.distill) else None
    output = f"{TRAIN_DIR}/{trial_key(ctx.cfg)}"
    settings = trial_settings(ctx.cfg)
    stage = trial_stage(settings, output, lambda: prepare(settings, t.path, tr.path if tr else None, ctx.data),
                        keep_tensorboard=True)  # no report draws it: its curves stay with it
    done = run_stage(ctx.run_dir, stage)
    return {**done.value, "path": str(done.path)}, t


def search_space(cfg: ExperimentConfig, path: str | None) -> SearchSpace:
    if path is None and cfg.search.space is None:
        return SearchSpace()
    return load_search_space(Path(path) if path else cfg.resolve_path(cfg.search.space), config_to_dict(cfg))


def study_name(cfg: ExperimentConfig, space_file: str | None) -> str | None:
    """None for the experiment's own study (search.space); the file's stem for another space
    file, whose index and report then go to RUN/studies/<stem>/."""
    if space_file is None or (cfg.search.space and Path(space_file).resolve() == cfg.resolve_path(cfg.search.space).resolve()):
        return None
    return Path(space_file).stem


def tune(ctx: Context, space_file: str | None, resume: bool) -> int:
    """Teacher and transfer sets (cached), the Tune study, then latency and the report. Returns
    the exit code: 1 when a trial failed after its retries."""
    space = search_space(ctx.cfg, space_file)
    variants = transfer_variants(ctx.cfg, space)
    t = teacher(ctx)
    transfers = {transfer_key(v): transfer(Context(v, ctx.run_dir, ctx.data), t).path
                 for v in variants if needs_transfer(v.distill) or "distill.stages" in space.keys}
    study = study_name(ctx.cfg, space_file)
    results = run_tune_study(study_settings(ctx.cfg), space, ctx.run_dir, t.path, transfers, resume=resume,
                             progress=progress_enabled(ctx.cfg.runtime.progress), study=study)
    failed = [r for r in results if r.status == "error"]
    tune_dir = ctx.run_dir / study_path(study, TUNE_DIR)
    print(f"tune {tune_dir}: {len(results)} trials, "
          + ", ".join(f"{n} {status}" for status in ("done", "stopped", "error")
                      if (n := sum(r.status == status for r in results))))
    for r in failed:
        print(f"  trial {r.key} failed: {(r.error or '').splitlines()[0] if r.error else ''}", file=sys.stderr)
    if len(failed) == len(results):
        raise XdrayError(f"every trial failed; see {tune_dir} for the logs")
    report(ctx.cfg, ctx.run_dir, ctx.data, t.path, study)
    return 1 if failed else 0


def run(ctx: Context) -> int:
    """`xdray run`: the whole study, then the export of the recommended student, where there is one."""
    from xdray.core.records import read_recommendation

    code = tune(ctx, None, resume=False)
    recommendation = read_recommendation(ctx.run_dir / MAIN_REPORT)
    if recommendation is not None and recommendation.trial_id:
        export(ctx.run_dir, None)
    return code


def report(cfg: ExperimentConfig, run_dir: Path, data: LabelledData, teacher_dir: Path,
           study: str | None = None) -> tuple[Path, list[dict]]:
    """Latency of the study's finished students, then the frontier report; returns its (path, rows)."""
    from transformers import AutoTokenizer

    from xdray.core.runtime import init_ray
    from xdray.data.encode import encode_dataset
    from xdray.frontier.board import BOARD_DIR
    from xdray.frontier.latency import Resources, study_latency
    from xdray.frontier.report import load_study, write_report

    keys = read_index(run_dir, study).done
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    dev = encode_dataset(tokenizer, data.splits["dev"], cfg.data.max_length)
    init_ray(cfg.runtime)
    s = cfg.search
    latency = study_latency(cfg.eval, Resources(s.cpus_per_trial, s.gpus_per_trial, dict(s.resources_per_trial)),
                            cfg.seed, run_dir, teacher_dir, keys, dev.input_ids, tokenizer.pad_token_id, study)
    shape = {"embedding_dim": cfg.student.embedding_dim, "hidden_size": cfg.student.hidden_size}
    path, rows = write_report(load_study(run_dir, cfg.name, cfg.eval, cfg.report, shape, latency, study), run_dir, study)
    best = next((r for r in rows if r["recommended"]), None)
    print(f"report {path}: {len(rows)} frontier rows, {sum(r['pareto'] for r in rows)} on the Pareto front; "
          + (f"recommended {best['trial_id']} (dev F1 {best['f1_mean']:.4f}, retention {best['retention']:.3f}, "
             f"compression {best['compression']:g}x)" if best else "no student meets report.min_retention"))
    print(f"compare the trials: tensorboard --logdir {path / BOARD_DIR}")
    return path, rows


def pull_run(run_dir: Path, study: str | None = None) -> None:
    """Where RUN_DIR is the local copy of a run on storage: fetch what report and export read
    (for a named study, its index and the trials it lists)."""
    if store.remote_of(run_dir) is None:
        return
    store.pull_many(run_dir, (CONFIG_FILE, TEACHER_DIR, MAIN_INDEX, MAIN_LATENCY, MAIN_REPORT, STUDIES_DIR),
                    refresh=True)
    store.pull_many(run_dir, (trial_dir(t.key) for t in read_index(run_dir, study).trials), refresh=True)


def export(run_dir: Path, trial: str | None) -> Path:
    from xdray.serve.export import export_student

    path = export_student(run_dir, load_run_config(run_dir), trial)
    print(f"export {path}: try `xdray predict --model {path} FILE`")
    return path
