"""Export a trained student for serving.

`xdray export RUN_DIR [--trial ID]` copies the recommended (or chosen) student to
RUN/export/<trial>/: safetensors weights, config (spec, labels, max length), the vocabulary map,
the teacher's tokenizer files, and the ONNX graphs `student.onnx` (fp32) and `student.int8.onnx`
(dynamic int8), which map (teacher token ids, lengths) to label logits and run in ONNX Runtime
without xdray or torch (xdray.distill.onnx); the fp32 graph, the form that is served, scored on the
run's dev and test splits (metrics.json "served"); the run's resolved config (experiment.yaml); and a
model card (README.md, xdray.serve.card). No TorchScript: it is deprecated upstream, and ONNX
Runtime runs the same graph faster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from xdray.core.errors import XdrayError
from xdray.core.files import atomic_write_json
from xdray.config import load_run_config
from xdray.core.rundir import CONFIG_FILE as RUN_CONFIG, EXPORT_DIR, MAIN_REPORT, TRIALS_DIR, trial_dir
from xdray.core.stage import Stage, run_stage
from xdray.distill.onnx import ONNX_FILE, ONNX_INT8_FILE, OnnxStudent, export_onnx
from xdray.core.metrics import count_parameters
from xdray.distill.saved import load_student
from xdray.distill.trial import METRICS_FILE
from xdray.frontier.report import RECOMMENDED_FILE
from xdray.serve.card import CARD_FILE, write_card
from xdray.serve.facts import card_facts


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


def _served_scores(out: Path, cfg, labels: list[str], tokenizer) -> dict[str, dict]:
    """Entity F1 of the exported fp32 ONNX graph (the form `xdray.load` and predict run) on the
    run's dev and test splits: the card's numbers are measured on the file that ships."""
    from xdray.data.encode import encode_dataset
    from xdray.data.sources import load_labelled
    from xdray.data.windows import evaluate_words

    model = OnnxStudent(out / ONNX_FILE)
    data = load_labelled(cfg)
    scores = {}
    for split in ("dev", "test"):
        if split in data.splits:
            encoded = encode_dataset(tokenizer, data.splits[split], cfg.data.max_length)
            scores[split] = evaluate_words(model, encoded.words, encoded.langs, labels)
    scores["sentences"] = {split: len(ds) for split, ds in data.splits.items()}
    return scores


def _export_into(run_dir: Path, key: str, out: Path) -> None:
    source = run_dir / trial_dir(key) / "student"
    shutil.copytree(source, out, dirs_exist_ok=True)
    student, vocab, labels, tokenizer = load_student(source)
    export_onnx(student, vocab, out)
    cfg = load_run_config(run_dir)
    served = _served_scores(out, cfg, labels, tokenizer)
    trial_metrics = run_dir / trial_dir(key) / METRICS_FILE
    summary = json.loads(trial_metrics.read_text()) if trial_metrics.exists() else {}
    metrics = {k: summary[k] for k in ("dev", "test", "params") if k in summary}
    metrics["served"] = {"runtime": "onnx", "file": ONNX_FILE, **{s: served[s] for s in ("dev", "test") if s in served}}
    atomic_write_json(out / METRICS_FILE, metrics)
    shutil.copyfile(run_dir / RUN_CONFIG, out / "experiment.yaml")
    write_card(out / CARD_FILE, card_facts(run_dir, cfg, key, served, count_parameters(student)))


def export_student(run_dir: Path, trial: str | None = None) -> Path:
    """Write RUN/export/<trial>/ (built aside, then published whole); returns its path."""
    key = choose_trial(run_dir, trial)
    stage = Stage(name="export", output=f"{EXPORT_DIR}/{key}", cached=False,
                  load=lambda path: path if (path / ONNX_INT8_FILE).exists() else None,
                  build=lambda work: _export_into(run_dir, key, work.staging),
                  inputs=(trial_dir(key), RUN_CONFIG))
    return run_stage(run_dir, stage).path
