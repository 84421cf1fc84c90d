"""Frontier report: one row per trial and per deployable variant of it (eager int8, ONNX fp32 and
int8), the Pareto set, the recommended student and the variant to serve it with, plots in the
style of the paper's figures, TensorBoard HParams, and a serving-cost estimate.

RUN/report/ is built in a staging directory and published whole: frontier.csv, frontier.md,
f1_vs_compression.png, f1_vs_speedup.png, recommended.json and tensorboard/ (frontier/board.py: a
run per trial and per form, with its curves and HParams session, so `tensorboard --logdir
RUN/report/tensorboard` compares the grid at a glance).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from xdray.config import ExperimentConfig
from xdray.core.files import atomic_write_json
from xdray.core.rundir import MAIN_REPORT, TEACHER_DIR, study_path, trial_dir
from xdray.core.stage import Stage, Work, run_stage
from xdray.distill.onnx import ONNX, ONNX_INT8
from xdray.distill.quantize import INT8
from xdray.distill.space import describe, short_name
from xdray.distill.trial import METRICS_FILE
from xdray.distill.tuning import TrialResult, read_index
from xdray.frontier.board import BOARD_DIR, write_board
from xdray.frontier.schema import CostConfig

log = logging.getLogger(__name__)

RECOMMENDED_FILE = "recommended.json"


def pareto_front(points: Sequence[Mapping[str, float]], maximise: str, minimise: Sequence[str]) -> list[bool]:
    """For each point, whether no other point is at least as good on every objective and strictly
    better on one (higher `maximise`, lower each of `minimise`)."""
    def dominates(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
        no_worse = a[maximise] >= b[maximise] and all(a[k] <= b[k] for k in minimise)
        better = a[maximise] > b[maximise] or any(a[k] < b[k] for k in minimise)
        return no_worse and better

    return [not any(dominates(other, point) for other in points if other is not point) for point in points]


def recommend(points: Sequence[Mapping[str, float]], min_retention: float, by: str = "params") -> int | None:
    """Index of the smallest (or, with by="latency_ms_b<N>", fastest) point whose retention meets
    `min_retention`; None when none does."""
    eligible = [i for i, p in enumerate(points) if p["retention"] >= min_retention]
    return min(eligible, key=lambda i: (points[i][by], -points[i]["retention"])) if eligible else None


# ----------------------------------------------------------------------------- rows


@dataclass
class Study:
    """What the report reads from a run directory."""

    cfg: ExperimentConfig
    teacher: dict  # RUN/teacher/metrics.json
    trials: list[TrialResult]
    latency: dict  # latency.measure() output
    space_keys: list[str]

    @property
    def batch_sizes(self) -> list[int]:
        return list(self.cfg.eval.batch_sizes)

    @property
    def has_reference(self) -> bool:
        return "reference" in self.latency["params"]


def _ratio(numerator: float, denominator: float | None) -> float | None:
    """numerator / denominator to 4 significant figures (None where nothing was measured)."""
    return float(f"{numerator / denominator:.4g}") if denominator else None


# The deployable forms of a trial: suffix of its name -> (runtime, int8). Eager rows take their F1
# from the trial's metrics; ONNX rows from the latency stage, which measures it on the artifact.
VARIANTS = {"": ("torch", False), INT8: ("torch", True), ONNX: ("onnx", False), ONNX_INT8: ("onnx", True)}


def _scores(study: Study, name: str, suffix: str, metrics: dict) -> dict | None:
    if suffix == "":
        return metrics
    if suffix == INT8:
        return metrics.get("int8")
    return study.latency.get("artifacts", {}).get(name)


def _row(study: Study, trial: TrialResult, metrics: dict, suffix: str) -> dict:
    name = trial.key + suffix
    runtime, int8 = VARIANTS[suffix]
    scores = _scores(study, name, suffix, metrics)
    dev, teacher_dev = scores["dev"], study.teacher["dev"]
    lat, params = study.latency["latency_ms"], study.latency["params"]
    row = {"trial_id": name, **{short_name(k): describe(v) for k, v in trial.params.items()}}
    row.setdefault("embedding_dim", study.cfg.student.embedding_dim)
    row.setdefault("hidden_size", study.cfg.student.hidden_size)
    size = scores["size_bytes"]
    row.update(runtime=runtime, int8=int8, params=metrics["params"], size_mb=round(size / 2**20, 3),
               compression=_ratio(params["teacher"], metrics["params"]))
    if study.has_reference:
        row["compression_ref"] = _ratio(params["reference"], metrics["params"])
    for b in study.batch_sizes:
        mine = lat.get(name, {}).get(str(b))
        row[f"latency_ms_b{b}"] = mine
        row[f"speedup_b{b}"] = _ratio(lat["teacher"][str(b)], mine)
        if study.has_reference:
            row[f"speedup_ref_b{b}"] = _ratio(lat["reference"][str(b)], mine)
    row.update(f1_mean=round(dev["f1_mean"], 4), f1_std=round(dev["f1_std"], 4), f1_micro=round(dev["f1_micro"], 4),
               retention=round(dev["f1_mean"] / max(teacher_dev["f1_mean"], 1e-9), 4))
    row.update({f"f1_{lang}": round(f1, 4) for lang, f1 in dev["per_language"].items()})
    if "test" in scores:
        row["test_f1_mean"] = round(scores["test"]["f1_mean"], 4)
    return row


def frontier_rows(study: Study, run_dir: Path) -> list[dict]:
    """One row per finished trial and per deployable variant of it that was timed and scored
    (eager int8, ONNX fp32 and int8: VARIANTS), with the Pareto set (max dev F1; min size and
    latency at the largest batch), the recommended trial and the variant to serve it with."""
    rows = []
    for trial in study.trials:
        if trial.status != "done":
            continue
        metrics = json.loads((run_dir / trial_dir(trial.key) / METRICS_FILE).read_text())
        rows.append(_row(study, trial, metrics, ""))
        rows += [_row(study, trial, metrics, suffix) for suffix in list(VARIANTS)[1:]
                 if trial.key + suffix in study.latency["latency_ms"]
                 and _scores(study, trial.key + suffix, suffix, metrics) is not None]
    slowest = f"latency_ms_b{max(study.batch_sizes)}"
    timed = [r for r in rows if r[slowest] is not None]
    for row, on_front in zip(timed, pareto_front(timed, "f1_mean", ["size_mb", slowest])):
        row["pareto"] = on_front
    by = "params" if study.cfg.report.recommend_by == "size" else slowest
    candidates = [r for r in rows if r["runtime"] == "torch" and not r["int8"] and r[by] is not None]  # trials
    best = recommend(candidates, study.cfg.report.min_retention, by)
    chosen = candidates[best] if best is not None else None
    serve = serving_variant(rows, chosen, slowest) if chosen is not None else None
    for row in rows:
        row.setdefault("pareto", False)
        row["recommended"] = row is chosen
        row["serve"] = row is serve
    return rows


SERVING_F1_TOLERANCE = 0.002


def serving_variant(rows: list[dict], chosen: dict, slowest: str) -> dict:
    """The recommended trial's fastest deployable variant at the largest batch whose dev F1 stays
    within SERVING_F1_TOLERANCE of the eager fp32 student's."""
    twins = [r for r in rows if r["trial_id"].startswith(chosen["trial_id"]) and r[slowest] is not None
             and r["f1_mean"] >= chosen["f1_mean"] - SERVING_F1_TOLERANCE]
    return min(twins, key=lambda r: r[slowest])


# ----------------------------------------------------------------------------- outputs


def write_csv(rows: list[dict], path: Path) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def serving_cost(latency_ms: float, batch_size: int, cost: CostConfig) -> tuple[float, float]:
    """(device hours, price) to serve users x queries/day x days sentences in batches."""
    batches = cost.users * cost.queries_per_user_per_day * cost.days / batch_size
    hours = batches * latency_ms / 3.6e6
    return hours, hours * cost.price_per_hour


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |" for row in rows]
    return lines


def markdown(study: Study, rows: list[dict]) -> str:
    cfg, lat = study.cfg, study.latency
    teacher_dev = study.teacher["dev"]
    sizes = study.batch_sizes
    lines = [f"# Frontier: {cfg.name}", "",
             f"Teacher: dev F1 {teacher_dev['f1_mean']:.4f} (std {teacher_dev['f1_std']:.4f}), "
             f"{lat['params']['teacher']:,} parameters, latency "
             + ", ".join(f"{lat['latency_ms']['teacher'][str(b)]:.2f} ms at batch {b}" for b in sizes) + "."]
    if study.has_reference:
        lines.append(f"Reference ({cfg.eval.reference_teacher}, random weights, timed alike): "
                     f"{lat['params']['reference']:,} parameters, latency "
                     + ", ".join(f"{lat['latency_ms']['reference'][str(b)]:.2f} ms at batch {b}" for b in sizes) + ".")
    lines += [f"Latency: median of {cfg.eval.latency_runs} runs after warm-up, {lat['device']}, "
              f"{lat['threads']} thread(s), every model on the same batches in one process.", ""]
    extra = [short_name(k) for k in study.space_keys if short_name(k) not in ("embedding_dim", "hidden_size")]
    columns = ["trial_id", "embedding_dim", "hidden_size", *extra, "runtime", "int8", "params", "size_mb",
               "compression"]
    columns += ["compression_ref"] if study.has_reference else []
    for b in sizes:
        columns += [f"latency_ms_b{b}", f"speedup_b{b}"] + ([f"speedup_ref_b{b}"] if study.has_reference else [])
    columns += ["f1_mean", "f1_std", "f1_micro", "retention", "pareto", "recommended", "serve"]
    lines += _table(rows, columns) + [""]
    best = next((r for r in rows if r["recommended"]), None)
    if best is None:
        lines.append(f"No student keeps {cfg.report.min_retention:.0%} of the teacher's dev F1: nothing recommended.")
    else:
        lines.append(f"Recommended ({'smallest' if cfg.report.recommend_by == 'size' else 'fastest'} student "
                     f"keeping >= {cfg.report.min_retention:.0%} of the teacher's dev F1): **{best['trial_id']}**, "
                     f"dev F1 {best['f1_mean']:.4f}, retention {best['retention']:.3f}, "
                     f"{best['compression']:g}x fewer parameters, {best[f'speedup_b{max(sizes)}']}x faster at "
                     f"batch {max(sizes)}.")
        serve = next(r for r in rows if r["serve"])
        lines.append(f"Serve it as **{serve['trial_id']}** ({serve['runtime']}{' int8' if serve['int8'] else ''}): "
                     f"the fastest of its deployable forms at batch {max(sizes)} within {SERVING_F1_TOLERANCE} dev F1 "
                     f"of it, {serve[f'speedup_b{max(sizes)}']}x faster than the teacher, dev F1 {serve['f1_mean']:.4f} "
                     "measured on that artifact.")
        langs = sorted(teacher_dev["per_language"])
        lines += ["", "Per language (dev F1):", ""]
        per = [{"model": "teacher", **{lang: round(teacher_dev["per_language"][lang], 4) for lang in langs}},
               {"model": best["trial_id"], **{lang: best.get(f"f1_{lang}") for lang in langs}}]
        lines += _table(per, ["model", *langs])
    unfinished = [t for t in study.trials if t.status != "done"]
    if unfinished:
        lines += ["", "Trials without a result:", ""]
        lines += [f"- {t.key} ({t.status}){': ' + t.error.splitlines()[0] if t.error else ''}" for t in unfinished]
    lines += ["", *cost_section(study, best)]
    return "\n".join(lines) + "\n"


def cost_section(study: Study, best: dict | None) -> list[str]:
    cost, b = study.cfg.report.cost, max(study.batch_sizes)
    lines = ["## Serving cost (estimate)", "",
             f"{cost.users:,} users x {cost.queries_per_user_per_day:g} sentences a day x {cost.days} days, "
             f"batches of {b}, at {cost.price_per_hour:g} per device hour on the timed device "
             f"({study.latency['device']}); set report.cost.* to your scenario.", ""]
    models = [("teacher", study.latency["latency_ms"]["teacher"][str(b)])]
    if study.has_reference:
        models.append((study.cfg.eval.reference_teacher, study.latency["latency_ms"]["reference"][str(b)]))
    if best is not None:
        models.append((best["trial_id"], best[f"latency_ms_b{b}"]))
    rows = []
    for name, latency in models:
        hours, price = serving_cost(latency, b, cost)
        rows.append({"model": name, f"latency_ms_b{b}": latency, "device_hours": round(hours, 1), "cost": round(price)})
    return lines + _table(rows, ["model", f"latency_ms_b{b}", "device_hours", "cost"])


MARKERS = {("torch", False): "o", ("torch", True): "^", ("onnx", False): "s", ("onnx", True): "D"}


def plot(rows: list[dict], x: str, label: str, teacher_f1: float, min_retention: float, path: Path, title: str):
    """Dev F1 against `x` (log scale), points labelled E-H, the teacher's F1 and the retention line,
    and the front of points no other beats on both axes. Returns the figure (closed by the caller)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get(x)]
    figure, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for (runtime, int8), marker in MARKERS.items():
        group = [r for r in points if (r["runtime"], r["int8"]) == (runtime, int8)]
        if group:
            ax.scatter([r[x] for r in group], [r["f1_mean"] for r in group], marker=marker, zorder=3,
                       label=f"student, {runtime}" + (" int8" if int8 else ""))
    for r in points:
        if r["runtime"] == "torch" and not r["int8"]:  # one label per trial; the markers tell its forms apart
            ax.annotate(f"{r['embedding_dim']}-{r['hidden_size']}", (r[x], r["f1_mean"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    front = [r for r, keep in zip(points, pareto_front([{"f1": r["f1_mean"], "neg": -r[x]} for r in points],
                                                        "f1", ["neg"])) if keep]
    front.sort(key=lambda r: r[x])
    if front:
        ax.plot([r[x] for r in front], [r["f1_mean"] for r in front], "--", color="gray", label="Pareto front")
    ax.axhline(teacher_f1, color="black", linewidth=1, label=f"teacher F1 {teacher_f1:.3f}")
    ax.axhline(min_retention * teacher_f1, color="red", linewidth=1, linestyle=":",
               label=f"{min_retention:.0%} of teacher")
    if points:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(label)
    ax.set_ylabel("dev F1 (mean over languages)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path)
    return figure


def build_report(study: Study, rows: list[dict], run_dir: Path, out: Path) -> None:
    """The report's files in `out`: frontier.csv / .md, the plots, TensorBoard, recommended.json."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "frontier.csv")
    text = markdown(study, rows)
    (out / "frontier.md").write_text(text, encoding="utf-8")
    teacher_f1, keep = study.teacher["dev"]["f1_mean"], study.cfg.report.min_retention
    b = max(study.batch_sizes)
    figures = {"f1_vs_compression": plot(rows, "compression", "compression (teacher params / student params)",
                                         teacher_f1, keep, out / "f1_vs_compression.png",
                                         f"{study.cfg.name}: F1 vs compression"),
               "f1_vs_speedup": plot(rows, f"speedup_b{b}", f"speedup at batch {b} (teacher / student latency)",
                                     teacher_f1, keep, out / "f1_vs_speedup.png",
                                     f"{study.cfg.name}: F1 vs speedup at batch {b}")}
    write_board(rows, run_dir, study.teacher, study.space_keys, study.batch_sizes, figures, text,
                out / BOARD_DIR)
    best = next((r for r in rows if r["recommended"]), None)
    serve = next((r for r in rows if r["serve"]), None)
    atomic_write_json(out / RECOMMENDED_FILE, {"trial_id": best["trial_id"] if best else None, "row": best,
                                               "serve": serve["trial_id"] if serve else None})


def read_report(path: Path) -> list[dict] | None:
    try:
        with (path / "frontier.csv").open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        recommended = json.loads((path / RECOMMENDED_FILE).read_text())["trial_id"]
    except (OSError, ValueError, KeyError):
        return None
    return [{**row, "recommended": row["trial_id"] == recommended, "pareto": row.get("pareto") == "True",
             "serve": row.get("serve") == "True"} for row in rows]


def write_report(study: Study, run_dir: Path, name: str | None = None) -> tuple[Path, list[dict]]:
    """The study's report (RUN/report/ for the experiment's own), rebuilt every time from what the
    run directory holds; returns (path, rows)."""
    rows: list[dict] = []

    def build(work: Work) -> None:
        rows.extend(frontier_rows(study, run_dir))
        build_report(study, rows, run_dir, work.staging)

    inputs = (TEACHER_DIR, *(trial_dir(t.key) for t in study.trials if t.status == "done"))
    stage = Stage(name="report", output=study_path(name, MAIN_REPORT), load=read_report, build=build,
                  inputs=inputs, cached=False)
    return run_stage(run_dir, stage).path, rows


def load_study(run_dir: Path, cfg: ExperimentConfig, latency: dict, name: str | None = None) -> Study:
    teacher = json.loads((run_dir / TEACHER_DIR / METRICS_FILE).read_text())
    trials, space = read_index(run_dir, name)
    return Study(cfg, teacher, trials, latency, space)
