"""Export a trained student for serving.

`xdray export RUN_DIR [--trial ID]` copies the recommended (or chosen) student to
RUN/export/<trial>/: safetensors weights, config (spec, labels, max length), the vocabulary map,
the teacher's tokenizer files, and the ONNX graphs `student.onnx` (fp32) and `student.int8.onnx`
(dynamic int8), which map (teacher token ids, lengths) to label logits and run in ONNX Runtime
without xdray or torch (xdray.distill.onnx). No TorchScript: it is deprecated upstream, and ONNX
Runtime runs the same graph faster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from xdray.core.errors import XdrayError
from xdray.core.files import atomic_write_json
from xdray.core.rundir import EXPORT_DIR, MAIN_REPORT, TRIALS_DIR, trial_dir
from xdray.core.stage import Stage, run_stage
from xdray.distill.student import load_student
from xdray.distill.trial import METRICS_FILE
from xdray.frontier.report import RECOMMENDED_FILE
from xdray.distill.onnx import ONNX_INT8_FILE, export_onnx


def choose_trial(run_dir: Path, trial: str | None) -> str:
    if trial:
        if Path(trial).name != trial or trial.startswith("."):
            raise XdrayError(f"--trial {trial}: expected a trial id such as E100-H200-1a2b3c4d, not a path")
        if not (run_dir / trial_dir(trial) / "student").is_dir():
            known = sorted(p.parent.name for p in (run_dir / TRIALS_DIR).glob("*/student"))
            raise XdrayError(f"--trial {trial}: no trained student in {run_dir / TRIALS_DIR}; "
                             f"trained: {', '.join(known) or 'none'}")
        return trial
    recommended = run_dir / MAIN_REPORT / RECOMMENDED_FILE
    if not recommended.exists():
        raise XdrayError(f"{recommended}: not found; run `xdray report {run_dir}` first, or pass --trial")
    chosen = json.loads(recommended.read_text())["trial_id"]
    if chosen is None:
        raise XdrayError(f"{run_dir / MAIN_REPORT / 'frontier.md'}: no student met report.min_retention, so none "
                         "is recommended; pick one with --trial ID (see frontier.csv)")
    return chosen


def _export_into(run_dir: Path, key: str, out: Path) -> None:
    source = run_dir / trial_dir(key) / "student"
    shutil.copytree(source, out, dirs_exist_ok=True)
    student, vocab, _, _ = load_student(source)
    export_onnx(student, vocab, out)
    metrics = run_dir / trial_dir(key) / METRICS_FILE
    if metrics.exists():
        summary = json.loads(metrics.read_text())
        atomic_write_json(out / METRICS_FILE, {k: summary[k] for k in ("dev", "test", "params") if k in summary})


def export_student(run_dir: Path, trial: str | None = None) -> Path:
    """Write RUN/export/<trial>/ (built aside, then published whole); returns its path."""
    key = choose_trial(run_dir, trial)
    stage = Stage(name="export", output=f"{EXPORT_DIR}/{key}", cached=False,
                  load=lambda path: path if (path / ONNX_INT8_FILE).exists() else None,
                  build=lambda work: _export_into(run_dir, key, work.staging), inputs=(trial_dir(key),))
    return run_stage(run_dir, stage).path
