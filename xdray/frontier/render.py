"""The report's pages: frontier.md (the table, the recommendation, per-language F1 and the
serving cost) and the plots in the style of the paper's figures."""

from __future__ import annotations

from pathlib import Path

from xdray.core.records import Form
from xdray.distill.space import short_name
from xdray.frontier.frontier import SERVING_F1_TOLERANCE, Study, form_of, pareto_front, serving_cost


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
    lat, settings = study.latency, study.report
    teacher_dev = study.teacher["dev"]
    sizes = study.batch_sizes
    lines = [f"# Frontier: {study.name}", "",
             f"Teacher: dev F1 {teacher_dev['f1_mean']:.4f} (std {teacher_dev['f1_std']:.4f}), "
             f"{lat.params['teacher']:,} parameters, latency "
             + ", ".join(f"{lat.ms('teacher', b):.2f} ms at batch {b}" for b in sizes) + "."]
    if study.has_reference:
        lines.append(f"Reference ({study.eval.reference_teacher}, random weights, timed alike): "
                     f"{lat.params['reference']:,} parameters, latency "
                     + ", ".join(f"{lat.ms('reference', b):.2f} ms at batch {b}" for b in sizes) + ".")
    lines += [f"Latency: median of {study.eval.latency_runs} runs after warm-up, {lat.device}, "
              f"{lat.threads} thread(s), every model on the same batches in one process.", ""]
    extra = [short_name(k) for k in study.space_keys if short_name(k) not in ("embedding_dim", "hidden_size")]
    columns = ["trial_id", "embedding_dim", "hidden_size", *extra, "runtime", "int8", "params", "size_mb",
               "compression"]
    columns += ["compression_ref"] if study.has_reference else []
    for b in sizes:
        columns += [f"latency_ms_b{b}", f"speedup_b{b}"] + ([f"speedup_ref_b{b}"] if study.has_reference else [])
    columns += ["f1_mean", "f1_std", "f1_micro", "retention", "pareto", "recommended", "serve"]
    lines += _table(rows, columns) + [""]
    best = next((r for r in rows if r["recommended"]), None)
    serve = next((r for r in rows if r["serve"]), None)  # the recommended student's form to serve
    if best is None:
        lines.append(f"No student keeps {settings.min_retention:.0%} of the teacher's dev F1: nothing recommended.")
    else:
        lines.append(f"Recommended ({'smallest' if settings.recommend_by == 'size' else 'fastest'} student "
                     f"keeping >= {settings.min_retention:.0%} of the teacher's dev F1): **{best['trial_id']}**, "
                     f"dev F1 {best['f1_mean']:.4f}, retention {best['retention']:.3f}, "
                     f"{best['compression']:g}x fewer parameters, {best[f'speedup_b{max(sizes)}']}x faster at "
                     f"batch {max(sizes)}.")
        lines.append(f"Serve it as **{serve['trial_id']}** ({form_of(serve).words}): "
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
    lines += ["", *cost_section(study, serve)]
    return "\n".join(lines) + "\n"


def cost_section(study: Study, served: dict | None) -> list[str]:
    """What serving the scenario would cost with the teacher, the reference and the recommended
    student in the form it is served in (`served`, the report's "serve" row)."""
    cost, b = study.report.cost, max(study.batch_sizes)
    lines = ["## Serving cost (estimate)", "",
             f"{cost.users:,} users x {cost.queries_per_user_per_day:g} sentences a day x {cost.days} days, "
             f"batches of {b}, at {cost.price_per_hour:g} {cost.currency} per device hour on the timed device "
             f"({study.latency.device}); set report.cost.* to your scenario.", ""]
    models = [("teacher", study.latency.ms("teacher", b))]
    if study.has_reference:
        models.append((study.eval.reference_teacher, study.latency.ms("reference", b)))
    if served is not None:
        models.append((f"{served['trial_id']} (served: {form_of(served).words})", served[f"latency_ms_b{b}"]))
    rows, unit = [], f"cost_{cost.currency}"
    for name, latency in models:
        hours, price = serving_cost(latency, b, cost)
        rows.append({"model": name, f"latency_ms_b{b}": latency, "device_hours": round(hours, 1), unit: round(price)})
    return lines + _table(rows, ["model", f"latency_ms_b{b}", "device_hours", unit])


MARKERS = {Form.EAGER: "o", Form.INT8: "^", Form.ONNX: "s", Form.ONNX_INT8: "D"}


def plot(rows: list[dict], x: str, label: str, teacher_f1: float, min_retention: float, path: Path, title: str):
    """Dev F1 against `x` (log scale), every point labelled with its shape and form, the
    recommended student ringed in the form it is served in, the teacher's F1 and the retention
    line, and the front of points no other beats on both axes. Returns the figure (closed by the
    caller)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.get(x)]
    figure, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    for form, marker in MARKERS.items():
        group = [r for r in points if form_of(r) is form]
        if group:
            ax.scatter([r[x] for r in group], [r["f1_mean"] for r in group], marker=marker, zorder=3,
                       label=f"student, {form.words}")
    for r in points:  # every point: its shape and its form
        form = form_of(r)
        ax.annotate(f"E{r['embedding_dim']}-H{r['hidden_size']}" + ("" if form is Form.EAGER else f" {form.value}"),
                    (r[x], r["f1_mean"]), textcoords="offset points", xytext=(4, 3), fontsize=6)
    served = next((r for r in points if r.get("serve")), None)
    if served is not None:
        ax.scatter([served[x]], [served["f1_mean"]], s=220, facecolors="none", edgecolors="crimson", linewidths=1.6,
                   zorder=4, label=f"recommended, served as {form_of(served).words}")
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
