"""Latency harness: models timed in the same process, on the same batches, median of many runs.

Warm-up first, then the median wall time of `runs` calls (at least 20); CPU threads pinned so the
teacher and the student see the same cores; CUDA synchronised around each call on GPU.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p90_ms: float
    runs: int


def time_calls(call: Callable[[], object], runs: int = 20, warmup: int = 3, device: str = "cpu") -> Timing:
    """Median and 90th percentile wall time (ms) of `call()` after `warmup` untimed calls."""
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
    samples.sort()
    return Timing(statistics.median(samples), samples[int(0.9 * (len(samples) - 1))], runs)


def compare(models: dict[str, Callable[[object], object]], batches: Sequence[object], runs: int = 20,
            threads: int | None = None, device: str = "cpu") -> dict[str, Timing]:
    """Time every model on the same batches, interleaved model by model per batch so drift in
    the machine's speed hits all of them alike. Returns the per-model median of the per-batch
    medians."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    per_model: dict[str, list[Timing]] = {name: [] for name in models}
    try:
        for batch in batches:
            for name, model in models.items():
                per_model[name].append(time_calls(lambda: model(batch), runs=runs, device=device))
    finally:
        torch.set_num_threads(previous)
    return {name: Timing(statistics.median(t.median_ms for t in ts), statistics.median(t.p90_ms for t in ts), runs)
            for name, ts in per_model.items()}
