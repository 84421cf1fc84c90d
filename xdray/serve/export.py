"""Export a trained student for serving.

`xdray export RUN_DIR [--trial ID]` copies the recommended (or chosen) student to
RUN/export/<trial>/: safetensors weights, config (spec, labels, max length), the vocabulary map,
the teacher's tokenizer files, and `student.torchscript.pt`, a TorchScript module that maps
(teacher token ids, lengths) to label logits and runs without xdray.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from xdray.core.errors import XdrayError
from xdray.core.files import atomic_write_json
from xdray.core.rundir import EXPORT_DIR, MAIN_REPORT, TRIALS_DIR, trial_dir
from xdray.core.stage import Stage, run_stage
from xdray.distill.student import BiLSTMStudent, load_student
from xdray.distill.trial import METRICS_FILE
from xdray.frontier.report import RECOMMENDED_FILE

TORCHSCRIPT_FILE = "student.torchscript.pt"


class ServingModule(torch.nn.Module):
    """Teacher WordPiece ids (B, T) and lengths (B,) -> label logits (B, T, C): the vocabulary map
    and the student in one scriptable module."""

    def __init__(self, student: BiLSTMStudent, lookup: torch.Tensor):
        super().__init__()
        self.student = student
        self.register_buffer("lookup", lookup)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.student(self.lookup[input_ids], lengths)[1]


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
    scripted = torch.jit.script(ServingModule(student, vocab.map(torch.arange(vocab.teacher_vocab_size))))
    scripted.save(str(out / TORCHSCRIPT_FILE))
    metrics = run_dir / trial_dir(key) / METRICS_FILE
    if metrics.exists():
        summary = json.loads(metrics.read_text())
        atomic_write_json(out / METRICS_FILE, {k: summary[k] for k in ("dev", "test", "params") if k in summary})


def export_student(run_dir: Path, trial: str | None = None) -> Path:
    """Write RUN/export/<trial>/ (built aside, then published whole); returns its path."""
    key = choose_trial(run_dir, trial)
    stage = Stage(name="export", output=f"{EXPORT_DIR}/{key}", cached=False,
                  load=lambda path: path if (path / TORCHSCRIPT_FILE).exists() else None,
                  build=lambda work: _export_into(run_dir, key, work.staging), inputs=(trial_dir(key),))
    return run_stage(run_dir, stage).path
