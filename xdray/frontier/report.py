"""The frontier report as a stage: RUN/report/ (a named study's: RUN/studies/<name>/report/),
rebuilt from the run's records on every report, in a staging directory and published whole:
frontier.csv, frontier.md, f1_vs_compression.png, f1_vs_speedup.png, recommended.json and
tensorboard/ (frontier/board.py: a run per trial and per form, with its curves and HParams
session, so `tensorboard --logdir RUN/report/tensorboard` compares the grid at a glance).

The rows and the recommendation are frontier/frontier.py's; the pages frontier/render.py's.
"""

from __future__ import annotations

from pathlib import Path

from xdray.core import store
from xdray.core.errors import XdrayError
from xdray.core.records import (METRICS_FILE, Latency, Recommendation, read_frontier, read_metrics,
                                read_recommendation, write_frontier, write_recommendation)
from xdray.core.rundir import MAIN_REPORT, TEACHER_DIR, study_path, trial_dir
from xdray.core.stage import Stage, Work, run_stage
from xdray.distill.tuning import read_index
from xdray.frontier.board import BOARD_DIR, write_board
from xdray.frontier.frontier import Study, frontier_rows
from xdray.frontier.render import markdown, plot
from xdray.frontier.schema import EvalConfig, ReportConfig


def build_report(study: Study, rows: list[dict], out: Path) -> None:
    """The report's files in `out`: frontier.csv / .md, the plots, TensorBoard, recommended.json."""
    out.mkdir(parents=True, exist_ok=True)
    write_frontier(out, rows)
    text = markdown(study, rows)
    (out / "frontier.md").write_text(text, encoding="utf-8")
    teacher_f1, keep = study.teacher["dev"]["f1_mean"], study.report.min_retention
    b = max(study.batch_sizes)
    figures = {"f1_vs_compression": plot(rows, "compression", "compression (teacher params / student params)",
                                         teacher_f1, keep, out / "f1_vs_compression.png",
                                         f"{study.name}: F1 vs compression"),
               "f1_vs_speedup": plot(rows, f"speedup_b{b}", f"speedup at batch {b} (teacher / student latency)",
                                     teacher_f1, keep, out / "f1_vs_speedup.png",
                                     f"{study.name}: F1 vs speedup at batch {b}")}
    histories = {key: metrics["history"] for key, metrics in study.metrics.items()}
    write_board(rows, histories, study.teacher, study.space_keys, study.batch_sizes, figures, text, out / BOARD_DIR)
    best = next((r for r in rows if r["recommended"]), None)
    serve = next((r for r in rows if r["serve"]), None)
    write_recommendation(out, Recommendation(best["trial_id"] if best else None, best,
                                             serve["trial_id"] if serve else None))


def read_report(path: Path) -> list[dict] | None:
    rows, recommendation = read_frontier(path), read_recommendation(path)
    if rows is None or recommendation is None:
        return None
    return [{**row, "recommended": row["trial_id"] == recommendation.trial_id, "pareto": row.get("pareto") == "True",
             "serve": row.get("serve") == "True"} for row in rows]


def write_report(study: Study, run_dir: Path, name: str | None = None) -> tuple[Path, list[dict]]:
    """The study's report (RUN/report/ for the experiment's own), rebuilt every time from what the
    run directory holds; returns (path, rows)."""
    rows: list[dict] = []

    def build(work: Work) -> None:
        rows.extend(frontier_rows(study))
        build_report(study, rows, work.staging)

    stage = Stage(name="report", output=study_path(name, MAIN_REPORT), load=read_report, build=build, cached=False)
    return run_stage(run_dir, stage).path, rows


def load_study(run_dir: Path, name: str, evaluation: EvalConfig, report: ReportConfig, shape: dict,
               latency: Latency, study: str | None = None) -> Study:
    """The records a report reads: the teacher's and every finished trial's metrics (pulled from
    storage where the run has it: the records only, no weights), and the study's index."""
    index = read_index(run_dir, study)
    store.pull_many(run_dir, [f"{TEACHER_DIR}/{METRICS_FILE}", *(f"{trial_dir(k)}/{METRICS_FILE}" for k in index.done)],
                    refresh=True)
    teacher = read_metrics(run_dir / TEACHER_DIR)
    if teacher is None:
        raise XdrayError(f"{run_dir / TEACHER_DIR / METRICS_FILE}: not found; run `xdray teacher` first")
    metrics = {}
    for key in index.done:
        record = read_metrics(run_dir / trial_dir(key), "run `xdray tune` again to train the trial again")
        if record is None:
            raise XdrayError(f"{run_dir / trial_dir(key) / METRICS_FILE}: not found, though the study lists the "
                             "trial as done; run `xdray tune` again")
        metrics[key] = record
    return Study(name, evaluation, report, shape, teacher, index.trials, metrics, latency, index.space)
