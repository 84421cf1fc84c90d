"""What an export's model card says, gathered from the run directory's records: the resolved
config, the teacher's metrics, the frontier rows and the latency measurements."""

from __future__ import annotations

from pathlib import Path

from xdray.core.records import Form, read_frontier, read_latency, read_metrics
from xdray.core.rundir import MAIN_LATENCY, MAIN_REPORT, TEACHER_DIR
from xdray.serve.card import CardFacts
from xdray.teacher.stage import how_trained

REFERENCE_NAME = "mBERT-base"


def describe_data(cfg) -> str:
    src = cfg.data.labelled
    if src.split_files:
        files = ", ".join(f"{Path(p).name} ({split})" for split, p in src.split_files.items())
        return f"{src.source} files {files}, scheme {src.scheme}"
    if src.source in ("conll", "iob"):
        return f"{src.source} files {src.file_pattern} in {Path(src.path).name}, scheme {src.scheme}"
    if src.source == "datasets":
        return f"the dataset {Path(src.path).name}"
    if src.source == "wikiann":
        return f"WikiANN ({src.dataset})"
    return "xdray's synthetic data"


def card_facts(run_dir: Path, cfg, key: str, served: dict, params: int) -> CardFacts:
    teacher = read_metrics(run_dir / TEACHER_DIR) or {}
    latency = read_latency(run_dir / MAIN_LATENCY)
    forms = [row for row in read_frontier(run_dir / MAIN_REPORT) or [] if Form.split(row["trial_id"])[0] == key]
    compression = {}
    measured = latency.params if latency else {}
    if measured.get("teacher"):
        compression["the teacher"] = round(measured["teacher"] / params, 1)
    if measured.get("reference"):
        compression[REFERENCE_NAME] = round(measured["reference"] / params, 1)
    splits = {s: served[s] for s in ("dev", "test") if s in served}
    return CardFacts(
        name=f"{cfg.name}-{key}", trial=key,
        teacher=how_trained(cfg.teacher.init, cfg.teacher.model, cfg.teacher.finetune.epochs),
        teacher_model=cfg.teacher.model if cfg.teacher.init != "build" else None,
        labels=list(cfg.data.labels), languages=sorted(splits["dev"]["per_language"]), data=describe_data(cfg),
        sentences=served.get("sentences", {}), served="ONNX Runtime on student.onnx (fp32)", f1=splits,
        teacher_f1={s: teacher[s] for s in splits if s in teacher}, params=params, compression=compression,
        forms=forms, batch_sizes=list(cfg.eval.batch_sizes), device=latency.device if latency else "cpu",
        command=f"xdray export {run_dir} --trial {key}", experiment=cfg.name, seed=cfg.seed)
