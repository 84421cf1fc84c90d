"""The teacher stage: build or load, fine-tune, evaluate and save the teacher into RUN/teacher/.

Output: the model and tokenizer (`save_pretrained`), metrics.json and fingerprint.json. The stage
is current when fingerprint.json's `inputs` equals the hash of what it depends on (teacher config,
labels, max length, the data, the seed, and the starting model's files); later stages cache on
`fingerprint`, the hash of the saved weights.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xdray.core.files import hash_file
from xdray.core.records import FINGERPRINT_FILE, read_metrics, read_object, write_json, write_metrics
from xdray.core.loader import config_to_dict, digest
from xdray.core.rundir import TEACHER_DIR
from xdray.core.runtime import RuntimeConfig
from xdray.core.stage import Done, Stage, Work, run_stage
from xdray.data.encode import encode_splits
from xdray.data.sources import LabelledData
from xdray.teacher.finetune import finetune
from xdray.teacher.load import evaluate_teacher, initial_teacher, model_reference
from xdray.teacher.schema import TeacherConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherSettings:
    """What the teacher stage reads of the experiment."""

    teacher: TeacherConfig
    base_dir: str  # the experiment file's folder: a relative teacher.model resolves against it
    seed: int
    max_length: int  # data.max_length: sub-tokens a window
    runtime: RuntimeConfig  # the cluster fine-tuning runs on


@dataclass(frozen=True)
class TeacherOutput:
    path: Path
    fingerprint: str  # hash of the model config + weights: what later stages cache on
    metrics: dict[str, Any]
    skipped: bool


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over config.json and the safetensors weights: identifies the teacher itself."""
    import hashlib

    sha = hashlib.sha256()
    for path in [model_dir / "config.json"] + sorted(model_dir.glob("*.safetensors")):
        sha.update(path.name.encode())
        hash_file(path, sha)
    return sha.hexdigest()[:16]


def input_fingerprint(s: TeacherSettings, data: LabelledData) -> str:
    """What the teacher stage depends on: teacher config, labels, max length, data, seed."""
    return digest({"teacher": config_to_dict(s.teacher), "labels": list(data.labels),
                   "max_length": s.max_length, "data": data.fingerprint, "seed": s.seed,
                   "model_files": _model_files_fingerprint(s)})


def _model_files_fingerprint(s: TeacherSettings) -> str | None:
    """A local starting model is part of the input: hash its weights, so editing it invalidates."""
    if s.teacher.init == "build":
        return None
    ref = model_reference(s.teacher, s.base_dir)
    return weights_fingerprint(Path(ref)) if Path(ref).is_dir() else ref


def read_teacher(teacher_dir: Path, inputs: str) -> TeacherOutput | None:
    """The saved teacher if it was built from the same inputs, else None (a damaged record is an
    error: rebuilding a teacher can take hours, so that is the user's call)."""
    remedy = f"delete {teacher_dir} to build the teacher again"
    meta = read_object(teacher_dir / FINGERPRINT_FILE, ("fingerprint", "inputs"), remedy)
    if meta is None or meta["inputs"] != inputs:
        return None
    metrics = read_metrics(teacher_dir, remedy)
    if metrics is None:
        return None
    return TeacherOutput(teacher_dir, meta["fingerprint"], metrics, skipped=True)


def build_teacher_into(s: TeacherSettings, data: LabelledData, inputs: str, work: Work,
                       progress: bool = False) -> None:
    """The stage body: the teacher, fine-tuned (or as it is, with epochs 0) and evaluated, saved
    into work.staging with its metrics and fingerprints."""
    started = time.time()
    model, tokenizer = initial_teacher(s.teacher, s.base_dir, s.seed, data)  # bad model files fail first
    out = work.staging
    encoded = encode_splits(tokenizer, data, s.max_length)
    ft = s.teacher.finetune
    if ft.epochs > 0:
        init_dir = work.scratch / "init"
        model.save_pretrained(init_dir, safe_serialization=True)
        tokenizer.save_pretrained(init_dir)
        finetune(ft, s.runtime, s.seed, init_dir, encoded, data.labels, work.scratch, out, progress)
        metrics = read_metrics(out)
    else:
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        metrics = {split: evaluate_teacher(model, encoded[split], data.labels, ft.eval_batch_size)
                   for split in ("dev", "test") if split in encoded}
    metrics["start"] = {"init": s.teacher.init, "model": s.teacher.model, "finetune_epochs": ft.epochs}
    metrics["wall_time_s"] = round(time.time() - started, 1)
    metrics["encoding"] = {split: enc.stats.counts() for split, enc in encoded.items()}
    write_metrics(out, metrics)
    write_json(out / FINGERPRINT_FILE, {"fingerprint": weights_fingerprint(out), "inputs": inputs,
                                               "labels": list(data.labels), "data": data.fingerprint})


def how_trained(init: str, model: str | None, epochs: float) -> str:
    """What the teacher stage did with the starting model, in words."""
    span = f"{epochs:g} epoch" + ("" if epochs == 1 else "s")
    if init == "finetuned":
        done = f"fine-tuned further for {span}" if epochs else "used as it is (teacher.finetune.epochs 0)"
        return f"checkpoint {model} {done}"
    origin = "a BERT built from the data" if init == "build" else f"pretrained {model} with a new head"
    return f"{origin}, fine-tuned for {span}" if epochs else f"{origin}, not fine-tuned (epochs 0)"


def _summary(teacher: TeacherOutput) -> str:
    dev = teacher.metrics["dev"]
    start = teacher.metrics.get("start")
    done = how_trained(start["init"], start["model"], start["finetune_epochs"]) + "; " if start else ""
    return (done + f"dev F1 mean {dev['f1_mean']:.4f} (std {dev['f1_std']:.4f}, micro {dev['f1_micro']:.4f}); "
            + ", ".join(f"{lang} {f1:.3f}" for lang, f1 in dev["per_language"].items()))


def teacher_stage(s: TeacherSettings, data: LabelledData, progress: bool = False) -> Stage[TeacherOutput]:
    inputs = input_fingerprint(s, data)
    return Stage(name="teacher", output=TEACHER_DIR, load=lambda path: read_teacher(path, inputs),
                 build=lambda work: build_teacher_into(s, data, inputs, work, progress), summary=_summary)


def run_teacher_stage(s: TeacherSettings, data: LabelledData, run_dir: Path, progress: bool = False) -> TeacherOutput:
    """The teacher for this experiment in RUN/teacher, built unless it is current."""
    done: Done[TeacherOutput] = run_stage(run_dir, teacher_stage(s, data, progress))
    t = done.value
    return TeacherOutput(t.path, t.fingerprint, t.metrics, skipped=done.skipped)
