"""Latency harness: models timed in the same process, on the same batches, median of many runs.

Warm-up first, then the median wall time of `runs` calls (at least 20); CPU threads pinned so the
teacher and the student see the same cores; CUDA synchronised around each call on GPU.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from xdray.core import store
from xdray.core.batching import pad_batch
from xdray.core.files import atomic_write_json
from xdray.core.rundir import MAIN_LATENCY, TEACHER_DIR, study_path, trial_dir
from xdray.core.runtime import LogThrottle, configure_logging, init_ray, torch_threads
from xdray.core.stage import Stage, Work, run_stage
from xdray.data.encode import Encoded
from xdray.data.windows import WordView, evaluate_words
from xdray.distill.quantize import INT8, quantize_int8

if TYPE_CHECKING:
    from xdray.config import ExperimentConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    median_ms: float


def time_calls(call: Callable[[], object], runs: int = 20, warmup: int = 3, device: str = "cpu") -> Timing:
    """Median wall time (ms) of `call()` after `warmup` untimed calls."""
    if runs < 20:
        raise ValueError("latency needs at least 20 timed runs")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            call()
        sync()
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            call()
            sync()
            samples.append((time.perf_counter() - started) * 1000)
    return Timing(statistics.median(samples))


def compare(models: dict[str, Callable[[object], object]], batches: Sequence[object], runs: int = 20,
            threads: int | None = None, device: str = "cpu",
            progress: Callable[[int, int, str], None] | None = None) -> dict[str, Timing]:
    """Time every model on the same batches, interleaved model by model per batch so drift in
    the machine's speed hits all of them alike. Returns the per-model median of the per-batch
    medians. `progress(done, total, name)` is called after each model's timing on a batch."""
    per_model: dict[str, list[Timing]] = {name: [] for name in models}
    done, total = 0, len(batches) * len(models)
    with torch_threads(threads):
        for batch in batches:
            for name, model in models.items():
                per_model[name].append(time_calls(lambda: model(batch), runs=runs, device=device))
                done += 1
                if progress is not None:
                    progress(done, total, name)
    return {name: Timing(statistics.median(t.median_ms for t in ts)) for name, ts in per_model.items()}


# ----------------------------------------------------------------------------- the study's latencies

# mBERT-base's architecture: random weights time exactly like the real ones.
MBERT_BASE = {"vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
              "intermediate_size": 3072, "max_position_embeddings": 512}
BATCHES_PER_SIZE = 3


def reference_teacher(name: str, num_labels: int):
    """A randomly initialised token classifier with a named reference architecture."""
    from transformers import BertConfig, BertForTokenClassification

    if name != "mbert-base":
        raise ValueError(f"unknown reference teacher {name!r}")
    torch.manual_seed(0)
    return BertForTokenClassification(BertConfig(**MBERT_BASE, num_labels=num_labels)).eval()


def sample_batches(input_ids: Sequence, batch_sizes: Sequence[int], pad_id: int, seed: int
                   ) -> dict[int, list[tuple[torch.Tensor, torch.Tensor]]]:
    """For each batch size, BATCHES_PER_SIZE batches of sentences drawn (seeded) from the data, so
    every model is timed at the data's own lengths. Returns {size: [(ids, mask), ...]}."""
    rng = np.random.default_rng(seed)
    out = {}
    for size in batch_sizes:
        out[size] = []
        for _ in range(BATCHES_PER_SIZE):
            idx = rng.choice(len(input_ids), size=min(size, len(input_ids)), replace=False)
            ids = pad_batch([input_ids[i] for i in idx], pad_id)
            out[size].append((ids, ids != pad_id))
    return out


@dataclass(frozen=True)
class LatencyRequest:
    teacher_dir: str
    students: dict  # name -> saved student directory
    reference: str  # "none" or a reference architecture
    batches: dict  # batch size -> [(ids, mask)]
    runs: int
    threads: int
    run_dir: str = ""  # with remote: the local copy to pull the models into, on whichever node
    remote: str | None = None
    inputs: tuple[str, ...] = ()  # what to pull there: the teacher and the students' trials
    dev: WordView | None = None  # with gold tags: the ONNX artifacts' own dev F1 is measured on it
    dev_langs: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()


def _onnx_variants(name: str, student, vocab, directory: Path, threads: int) -> dict:
    """name+"+onnx" / name+"+onnx-int8" -> (ONNX Runtime session, bytes of the graph), exported into
    `directory`: the artifacts users deploy, timed and scored as they are."""
    from xdray.distill.onnx import ONNX_VARIANTS, OnnxStudent, export_onnx

    export_onnx(student, vocab, directory)
    return {name + suffix: (OnnxStudent(directory / file, threads), (directory / file).stat().st_size)
            for suffix, file in ONNX_VARIANTS.items()}


def _timed_models(request: LatencyRequest, device: str, scratch: Path) -> tuple[dict, dict, dict]:
    """(name -> callable(batch), name -> parameter count, ONNX variant -> (model, bytes)) for
    every model of the request. Quantised and ONNX variants are CPU-only."""
    from xdray.core.metrics import count_parameters
    from xdray.distill.saved import load_student
    from xdray.teacher.load import load_token_classifier

    teacher = load_token_classifier(request.teacher_dir).eval()
    transformers = {"teacher": teacher}
    if request.reference != "none":
        transformers["reference"] = reference_teacher(request.reference, teacher.config.num_labels)
    models, params, artifacts = {}, {}, {}
    for name, model in transformers.items():
        params[name] = count_parameters(model)
        model = model.to(device).half() if device.startswith("cuda") else model
        # The reference's vocabulary may be smaller than the teacher's (mBERT 119,547 < XLM-R 250,002):
        # its ids are folded into range; which ids a BERT embeds does not change its latency.
        models[name] = lambda b, m=model, v=model.config.vocab_size: m(input_ids=b[0] % v, attention_mask=b[1]).logits
    for name, directory in request.students.items():
        student, vocab, _, _ = load_student(Path(directory))
        params[name] = count_parameters(student)
        variants = {name: student.to(device)}
        if device == "cpu":
            variants[name + INT8] = quantize_int8(student)
            onnx = _onnx_variants(name, student, vocab, scratch / name, request.threads)
            artifacts.update(onnx)
            models.update({variant: lambda b, m=model: m(b[0], b[1]) for variant, (model, _) in onnx.items()})
        for variant, model in variants.items():
            models[variant] = lambda b, m=model, v=vocab: m(v.map(b[0].cpu()).to(b[0].device), b[1].sum(1))[1]
    return models, params, artifacts


def _artifact_scores(request: LatencyRequest, artifacts: dict) -> dict:
    """{variant: {"dev": F1 report, "size_bytes"}} of each ONNX artifact, on the dev words."""
    if request.dev is None:
        return {}
    scores = {}
    for number, (variant, (model, size)) in enumerate(artifacts.items(), start=1):
        log.info("latency: dev F1 of %s (%d of %d artifacts)", variant, number, len(artifacts))
        scores[variant] = {"dev": evaluate_words(model, request.dev, request.dev_langs, request.labels),
                           "size_bytes": size}
    return scores


def _progress_lines(what: str) -> Callable[[int, int, str], None]:
    """A log line at most every LOG_SECONDS: mBERT-base alone takes minutes at batch 32 on CPU."""
    throttle = LogThrottle()

    def line(done: int, total: int, name: str) -> None:
        if throttle.due():
            log.info("latency: %s, %d of %d timings (last: %s)", what, done, total, name)

    return line


def measure(request: LatencyRequest) -> dict:
    """Time every model of the request in this process on the same batches (runs in a Ray task
    holding one trial's resources). Returns {"device", "threads", "params", "latency_ms":
    {name: {batch size: median ms}}}."""
    configure_logging()  # a Ray task: its progress lines reach the driver's log
    if request.remote:  # the task may run on a node that has not seen this run
        store.attach(Path(request.run_dir), request.remote)
        store.pull_many(Path(request.run_dir), request.inputs)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="xdray-onnx-") as scratch:
        models, params, artifacts = _timed_models(request, device, Path(scratch))
        latency: dict[str, dict[str, float]] = {name: {} for name in models}
        for size, batches in request.batches.items():
            log.info("latency: %d models at batch %d, %d runs each", len(models), size, request.runs)
            moved = [tuple(t.to(device) for t in batch) for batch in batches]
            timings = compare(models, moved, runs=request.runs, threads=request.threads, device=device,
                              progress=_progress_lines(f"batch {size}"))
            for name, timing in timings.items():
                latency[name][str(size)] = round(timing.median_ms, 4)
        artifacts = _artifact_scores(request, artifacts)
    return {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "threads": request.threads,
            "params": params, "latency_ms": latency, "artifacts": artifacts}


def measure_on_cluster(request: LatencyRequest, cpus: float, gpus: float, resources: dict | None = None) -> dict:
    """`measure` in a Ray task with one trial's resources."""
    import ray

    task = ray.remote(num_cpus=cpus, num_gpus=gpus, resources=resources or None, max_retries=1)(measure)
    return ray.get(task.remote(request))


def study_latency(cfg: ExperimentConfig, run_dir: Path, teacher_dir: Path, trial_keys: Sequence[str],
                  dev: Encoded, labels: Sequence[str], pad_id: int, study: str | None = None) -> dict:
    """Time the teacher (and the reference), every finished student, its int8 variant and its
    ONNX fp32 / int8 artifacts (whose dev F1 is measured here, on `dev`'s words), in one Ray task
    with a trial's resources; a stage (RUN/eval/latency.json for the experiment's own study),
    current for the same models and settings."""
    students = {key: str(run_dir / trial_dir(key) / "student") for key in trial_keys}
    settings = {"students": sorted(students), "batch_sizes": list(cfg.eval.batch_sizes), "runs": cfg.eval.latency_runs,
                "reference": cfg.eval.reference_teacher, "cpus": cfg.search.cpus_per_trial,
                "gpus": cfg.search.gpus_per_trial, "seed": cfg.seed, "artifacts": "onnx"}
    inputs = (TEACHER_DIR, *(trial_dir(key) for key in trial_keys))

    def load(path: Path) -> dict | None:
        try:
            cached = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cached if cached.get("settings") == settings else None

    def build(work: Work) -> None:
        init_ray(cfg.runtime)
        request = LatencyRequest(str(teacher_dir), students, cfg.eval.reference_teacher,
                                 sample_batches(dev.input_ids, cfg.eval.batch_sizes, pad_id, cfg.seed),
                                 cfg.eval.latency_runs, max(1, int(cfg.search.cpus_per_trial)), str(run_dir),
                                 store.remote_of(run_dir), inputs, dev.words, tuple(dev.langs), tuple(labels))
        measured = measure_on_cluster(request, cfg.search.cpus_per_trial, cfg.search.gpus_per_trial,
                                      cfg.search.resources_per_trial)
        atomic_write_json(work.staging, {**measured, "settings": settings})

    stage = Stage(name="latency", output=study_path(study, MAIN_LATENCY), load=load, build=build, inputs=inputs)
    return run_stage(run_dir, stage).value
