"""Export a trained student for serving.

`xdray export RUN_DIR [--trial ID]` copies the recommended (or chosen) student to
RUN/export/<trial>/: safetensors weights, config (spec, labels, max length), the vocabulary map,
the teacher's tokenizer files, and the ONNX graphs `student.onnx` (fp32) and `student.int8.onnx`
(dynamic int8), which map (teacher token ids, lengths) to label logits and run in ONNX Runtime
without xdray or torch (xdray.distill.onnx): the very files the trial scored on the run's dev and
test splits, with those scores (metrics.json "forms"; "served" for the fp32 graph, the form that
`xdray.load` and predict run); the run's resolved config (experiment.yaml); and a
model card (README.md, xdray.serve.card). No TorchScript: it is deprecated upstream, and ONNX
Runtime runs the same graph faster.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from xdray.core.errors import XdrayError
from xdray.core.records import Form, read_metrics, read_recommendation, write_metrics
from xdray.core.rundir import CONFIG_FILE as RUN_CONFIG, EXPORT_DIR, MAIN_REPORT, TRIALS_DIR, trial_dir
from xdray.core.stage import Stage, run_stage
from xdray.distill.forms import FORM_FILES
from xdray.distill.onnx import ONNX_FILE, ONNX_INT8_FILE
from xdray.serve.card import CARD_FILE, write_card
from xdray.serve.facts import card_facts


def _check_trial_id(trial: str, what: str) -> None:
    if Path(trial).name != trial or trial.startswith("."):
        raise XdrayError(f"{what} {trial}: expected a trial id such as E100-H200-1a2b3c4d, not a path")


def choose_trial(run_dir: Path, trial: str | None) -> str:
    if trial:
        _check_trial_id(trial, "--trial")
        if not (run_dir / trial_dir(trial) / "student").is_dir():
            known = sorted(p.parent.name for p in (run_dir / TRIALS_DIR).glob("*/student"))
            raise XdrayError(f"--trial {trial}: no trained student in {run_dir / TRIALS_DIR}; "
                             f"trained: {', '.join(known) or 'none'}")
        return trial
    recommendation = read_recommendation(run_dir / MAIN_REPORT)
    if recommendation is None:
        raise XdrayError(f"{run_dir / MAIN_REPORT}: no report; run `xdray report {run_dir}` first, or pass --trial")
    if recommendation.trial_id is None:
        raise XdrayError(f"{run_dir / MAIN_REPORT / 'frontier.md'}: no student met report.min_retention, so none "
                         "is recommended; pick one with --trial ID (see frontier.csv)")
    _check_trial_id(recommendation.trial_id, f"{run_dir / MAIN_REPORT} recommends")
    return recommendation.trial_id


def _export_into(run_dir: Path, cfg, key: str, out: Path) -> None:
    """The trial's saved student with the ONNX graphs it scored, their scores, the config, the card."""
    trial = run_dir / trial_dir(key)
    summary = read_metrics(trial, "run `xdray tune` again to train the trial again")
    if summary is None or "forms" not in summary:
        raise XdrayError(f"{trial}: the trial has not finished (or was trained before its forms were scored); "
                         "run `xdray tune` on the experiment again")
    shutil.copytree(trial / "student", out, dirs_exist_ok=True)
    served = summary["forms"][Form.ONNX.value]
    splits = {s: served[s] for s in ("dev", "test") if s in served}
    metrics = {k: summary[k] for k in ("dev", "test", "params") if k in summary}
    metrics["served"] = {"runtime": Form.ONNX.runtime, "file": ONNX_FILE, **splits}
    metrics["forms"] = {f.value: {**summary["forms"][f.value], **({"file": FORM_FILES[f]} if f in FORM_FILES else {})}
                        for f in Form if f.value in summary["forms"]}
    write_metrics(out, metrics)
    shutil.copyfile(run_dir / RUN_CONFIG, out / "experiment.yaml")
    write_card(out / CARD_FILE, card_facts(run_dir, cfg, key, {**splits, "sentences": summary.get("sentences", {})},
                                           summary["params"]))


def export_student(run_dir: Path, cfg, trial: str | None = None) -> Path:
    """Write RUN/export/<trial>/ (built aside, then published whole); returns its path. `cfg`:
    the run's experiment (RUN/config.yaml, loaded), for the model card."""
    key = choose_trial(run_dir, trial)
    stage = Stage(name="export", output=f"{EXPORT_DIR}/{key}", cached=False,
                  load=lambda path: path if (path / ONNX_INT8_FILE).exists() else None,
                  build=lambda work: _export_into(run_dir, cfg, key, work.staging),
                  inputs=(trial_dir(key), RUN_CONFIG))
    return run_stage(run_dir, stage).path
