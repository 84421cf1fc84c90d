"""The frontier's maths: one row per finished trial and per deployable form of it, the Pareto
set, the recommended student and the form to serve it in, and the serving-cost estimate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from xdray.core.records import Form, Latency, TrialResult, trial_forms
from xdray.distill.space import describe, short_name
from xdray.frontier.schema import CostConfig, EvalConfig, ReportConfig

SERVING_F1_TOLERANCE = 0.002


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


@dataclass
class Study:
    """What the report reads from a run directory: its own config sections, and the records."""

    name: str  # the experiment's
    eval: EvalConfig
    report: ReportConfig
    shape: dict  # the experiment's student.embedding_dim / hidden_size, for trials that do not search them
    teacher: dict  # RUN/teacher/metrics.json
    trials: list[TrialResult]
    metrics: dict[str, dict]  # key -> the finished trial's metrics.json
    latency: Latency
    space_keys: list[str]

    @property
    def batch_sizes(self) -> list[int]:
        return list(self.eval.batch_sizes)

    @property
    def has_reference(self) -> bool:
        return "reference" in self.latency.params


def _ratio(numerator: float, denominator: float | None) -> float | None:
    """numerator / denominator to 4 significant figures (None where nothing was measured)."""
    return float(f"{numerator / denominator:.4g}") if denominator else None


def _row(study: Study, trial: TrialResult, form: Form, scores: dict) -> dict:
    name = form.row_name(trial.key)
    metrics, lat, params = study.metrics[trial.key], study.latency, study.latency.params
    dev, teacher_dev = scores["dev"], study.teacher["dev"]
    row = {"trial_id": name, **{short_name(k): describe(v) for k, v in trial.params.items()}}
    for key, value in study.shape.items():
        row.setdefault(key, value)
    row.update(runtime=form.runtime, int8=form.int8, params=metrics["params"],
               size_mb=round(scores["size_bytes"] / 2**20, 3), compression=_ratio(params["teacher"], metrics["params"]))
    if study.has_reference:
        row["compression_ref"] = _ratio(params["reference"], metrics["params"])
    for b in study.batch_sizes:
        mine = lat.ms(name, b)
        row[f"latency_ms_b{b}"] = mine
        row[f"speedup_b{b}"] = _ratio(lat.ms("teacher", b), mine)
        if study.has_reference:
            row[f"speedup_ref_b{b}"] = _ratio(lat.ms("reference", b), mine)
    row.update(f1_mean=round(dev["f1_mean"], 4), f1_std=round(dev["f1_std"], 4), f1_micro=round(dev["f1_micro"], 4),
               retention=round(dev["f1_mean"] / max(teacher_dev["f1_mean"], 1e-9), 4))
    row.update({f"f1_{lang}": round(f1, 4) for lang, f1 in dev["per_language"].items()})
    if "test" in scores:
        row["test_f1_mean"] = round(scores["test"]["f1_mean"], 4)
    return row


def frontier_rows(study: Study) -> list[dict]:
    """One row per finished trial and per deployable form of it that was scored (by its trial)
    and timed (by the latency stage), with the Pareto set (max dev F1; min size and latency at
    the largest batch), the recommended trial and the form to serve it in."""
    rows = []
    for trial in study.trials:
        if trial.status != "done":
            continue
        rows += [_row(study, trial, form, scores) for form, scores in trial_forms(study.metrics[trial.key]).items()
                 if form is Form.EAGER or form.row_name(trial.key) in study.latency.latency_ms]
    slowest = f"latency_ms_b{max(study.batch_sizes)}"
    timed = [r for r in rows if r[slowest] is not None]
    for row, on_front in zip(timed, pareto_front(timed, "f1_mean", ["size_mb", slowest])):
        row["pareto"] = on_front
    by = "params" if study.report.recommend_by == "size" else slowest
    candidates = [r for r in rows if form_of(r) is Form.EAGER and r[by] is not None]  # the trials themselves
    best = recommend(candidates, study.report.min_retention, by)
    chosen = candidates[best] if best is not None else None
    serve = serving_variant(rows, chosen, slowest) if chosen is not None else None
    for row in rows:
        row.setdefault("pareto", False)
        row["recommended"] = row is chosen
        row["serve"] = row is serve
    return rows


def form_of(row: Mapping) -> Form:
    return Form.split(row["trial_id"])[1]


def serving_variant(rows: list[dict], chosen: dict, slowest: str) -> dict:
    """The recommended trial's fastest deployable form at the largest batch whose dev F1 stays
    within SERVING_F1_TOLERANCE of the eager fp32 student's."""
    key = chosen["trial_id"]
    twins = [r for r in rows if Form.split(r["trial_id"])[0] == key and r[slowest] is not None
             and r["f1_mean"] >= chosen["f1_mean"] - SERVING_F1_TOLERANCE]
    return min(twins, key=lambda r: r[slowest])


def serving_cost(latency_ms: float, batch_size: int, cost: CostConfig) -> tuple[float, float]:
    """(device hours, price) to serve users x queries/day x days sentences in batches."""
    batches = cost.users * cost.queries_per_user_per_day * cost.days / batch_size
    hours = batches * latency_ms / 3.6e6
    return hours, hours * cost.price_per_hour
