"""Latency harness: models timed in the same process, on the same batches, median of many runs.

Warm-up first, then the median wall time of `runs` calls (at least 20); CPU threads pinned so the
teacher and the student see the same cores; CUDA synchronised around each call on GPU.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from xdray.core import store
from xdray.core.batching import pad_batch
from xdray.core.records import CorruptRecord, Form, Latency, read_latency, write_json
from xdray.core.rundir import MAIN_LATENCY, TEACHER_DIR, study_path, trial_dir
from xdray.core.runtime import LogThrottle, configure_logging, torch_threads
from xdray.core.stage import Stage, Work, run_stage
from xdray.frontier.schema import EvalConfig

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
class Resources:
    """What the latency task holds: one trial's share of the cluster (search.*_per_trial)."""

    cpus: float = 1.0
    gpus: float = 0.0
    custom: dict = field(default_factory=dict)

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


@dataclass(frozen=True)
class LatencyRequest:
    teacher_dir: str
    students: dict  # trial key -> saved student directory
    reference: str  # "none" or a reference architecture
    batches: dict  # batch size -> [(ids, mask)]
    runs: int
    threads: int
    run_dir: str = ""  # with remote: the local copy to pull the models into, on whichever node
    remote: str | None = None
    inputs: tuple[str, ...] = ()  # what to pull there: the teacher and the students' trials


def _timed_models(request: LatencyRequest, device: str) -> tuple[dict, dict]:
    """(name -> callable(batch), name -> parameter count) for every model of the request: the
    teacher (and reference), and every form of every student as its trial saved it
    (xdray.distill.forms; the int8 and ONNX forms on the CPU only)."""
    from xdray.core.metrics import count_parameters
    from xdray.distill.forms import load_forms
    from xdray.teacher.load import load_token_classifier

    teacher = load_token_classifier(request.teacher_dir).eval()
    transformers = {"teacher": teacher}
    if request.reference != "none":
        transformers["reference"] = reference_teacher(request.reference, teacher.config.num_labels)
    models, params = {}, {}
    for name, model in transformers.items():
        params[name] = count_parameters(model)
        model = model.to(device).half() if device.startswith("cuda") else model
        # The reference's vocabulary may be smaller than the teacher's (mBERT 119,547 < XLM-R 250,002):
        # its ids are folded into range; which ids a BERT embeds does not change its latency.
        models[name] = lambda b, m=model, v=model.config.vocab_size: m(input_ids=b[0] % v, attention_mask=b[1]).logits
    forms = tuple(Form) if device == "cpu" else (Form.EAGER,)
    for key, directory in request.students.items():
        loaded, _, params[key] = load_forms(Path(directory), forms, request.threads, device)
        models.update({form.row_name(key): lambda b, m=model: m(b[0], b[1]) for form, model in loaded.items()})
    return models, params


def _progress_lines(what: str) -> Callable[[int, int, str], None]:
    """A log line at most every LOG_SECONDS: mBERT-base alone takes minutes at batch 32 on CPU."""
    throttle = LogThrottle()

    def line(done: int, total: int, name: str) -> None:
        if throttle.due():
            log.info("latency: %s, %d of %d timings (last: %s)", what, done, total, name)

    return line


def measure(request: LatencyRequest) -> Latency:
    """Time every model of the request in this process on the same batches (runs in a Ray task
    holding one trial's resources)."""
    configure_logging()  # a Ray task: its progress lines reach the driver's log
    if request.remote:  # the task may run on a node that has not seen this run
        store.attach(Path(request.run_dir), request.remote)
        store.pull_many(Path(request.run_dir), request.inputs)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models, params = _timed_models(request, device)
    latency: dict[str, dict[int, float]] = {name: {} for name in models}
    for size, batches in request.batches.items():
        log.info("latency: %d models at batch %d, %d runs each", len(models), size, request.runs)
        moved = [tuple(t.to(device) for t in batch) for batch in batches]
        timings = compare(models, moved, runs=request.runs, threads=request.threads, device=device,
                          progress=_progress_lines(f"batch {size}"))
        for name, timing in timings.items():
            latency[name][int(size)] = round(timing.median_ms, 4)
    return Latency(torch.cuda.get_device_name() if device == "cuda" else "cpu", request.threads, params, latency)


def measure_on_cluster(request: LatencyRequest, resources: Resources) -> Latency:
    """`measure` in a Ray task with one trial's resources."""
    import ray

    task = ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus, resources=resources.custom or None,
                      max_retries=1)(measure)
    return ray.get(task.remote(request))


def study_latency(settings: EvalConfig, resources: Resources, seed: int, run_dir: Path, teacher_dir: Path,
                  trial_keys: Sequence[str], dev_ids: Sequence, pad_id: int, study: str | None = None) -> Latency:
    """Time the teacher (and the reference) and every form of every finished student, in one Ray
    task with a trial's resources, on batches of dev sentences (`dev_ids`); a stage
    (RUN/eval/latency.json for the experiment's own study), current for the same models and
    settings. Ray must be running."""
    students = {key: str(run_dir / trial_dir(key) / "student") for key in trial_keys}
    recorded = {"students": sorted(students), "batch_sizes": list(settings.batch_sizes),
                "runs": settings.latency_runs, "reference": settings.reference_teacher, "cpus": resources.cpus,
                "gpus": resources.gpus, "seed": seed, "forms": [f.value for f in Form]}
    inputs = (TEACHER_DIR, *(trial_dir(key) for key in trial_keys))

    def load(path: Path) -> Latency | None:
        try:
            cached = read_latency(path)
        except CorruptRecord as err:
            log.warning("%s; measuring again", err)
            return None
        return cached if cached is not None and cached.settings == recorded else None

    def build(work: Work) -> None:
        request = LatencyRequest(str(teacher_dir), students, settings.reference_teacher,
                                 sample_batches(dev_ids, settings.batch_sizes, pad_id, seed),
                                 settings.latency_runs, resources.threads, str(run_dir),
                                 store.remote_of(run_dir), inputs)
        measured = measure_on_cluster(request, resources)
        write_json(work.staging, {**measured.to_json(), "settings": recorded})

    stage = Stage(name="latency", output=study_path(study, MAIN_LATENCY), load=load, build=build, inputs=inputs)
    return run_stage(run_dir, stage).value
