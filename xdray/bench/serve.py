"""`xdray bench serve`: the Ray Serve deployment under load, with request batching on and off on
the same deployment (`?batching=off`), at several concurrencies: requests/s and p50/p99 latency.
Each request is one sentence of raw text (PAN-X dev text where present), as a user's would be.

Beside them, Serve's own ceiling on this cluster: an echo deployment that parses the same requests
and answers without a model (`echo_rps_c*`). Batching can remove the model's share of a request's
cost, not Serve's: where the echo is barely faster than the unbatched tagger, no batching speedup
is left to win (`batched_share_of_ceiling_c*` says how close the tagger gets)."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xdray.bench.common import bench_sentences, panx_dir, random_student, show


def _random_student(directory: Path, sentences: list[list[str]]) -> Path:
    """common.random_student, saved and exported with its ONNX graphs."""
    from xdray.distill.onnx import export_onnx
    from xdray.distill.saved import save_student

    student, vocab, labels, tokenizer = random_student(sentences)
    save_student(directory, student, vocab, labels, tokenizer, extra={"max_length": 64})
    export_onnx(student, vocab, directory)
    return directory


def _load(url: str, texts: list[str], concurrency: int) -> dict:
    """Send every text as its own request from `concurrency` threads: requests/s, p50 and p99 ms."""
    def one(text: str) -> float:
        started = time.perf_counter()
        request = urllib.request.Request(url, data=json.dumps({"text": text}).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(one, texts))
    wall = time.perf_counter() - started
    return {"rps": round(len(texts) / wall, 1), "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2)}


def bench_serve(model: str | None, panx: Path, requests: int, concurrencies: list[int], runtime: str,
                max_batch_size: int) -> dict:
    from xdray.core.runtime import RuntimeConfig, free_port, init_ray
    from xdray.serve.deploy import ServeConfig, shutdown, start, swap_to_echo

    sentences, _, source = bench_sentences(requests, panx)
    texts = [" ".join(words) for words in sentences]
    with tempfile.TemporaryDirectory(prefix="xdray-bench-") as tmp:
        model_dir = model or str(_random_student(Path(tmp) / "student", sentences))
        init_ray(RuntimeConfig(progress="off"))
        url = start(ServeConfig(model_dir, runtime=runtime, port=free_port(), max_batch_size=max_batch_size))
        try:
            _load(url + "/predict", texts[:20], 4)  # warm-up
            result = {"requests": len(texts), "source": source, "student": "trained" if model else "random weights",
                      "runtime": runtime, "replicas": 1, "max_batch_size": max_batch_size}
            for c in concurrencies:
                for mode, suffix in (("batched", ""), ("unbatched", "?batching=off")):
                    for key, value in _load(url + "/predict" + suffix, texts, c).items():
                        result[f"{mode}_{key}_c{c}"] = value
                result[f"batching_speedup_c{c}"] = round(result[f"batched_rps_c{c}"] / result[f"unbatched_rps_c{c}"], 3)
            swap_to_echo()
            _load(url + "/echo", texts[:20], 4)
            for c in concurrencies:
                result[f"echo_rps_c{c}"] = _load(url + "/echo", texts, c)["rps"]
                result[f"batched_share_of_ceiling_c{c}"] = round(result[f"batched_rps_c{c}"] / result[f"echo_rps_c{c}"], 3)
        finally:
            shutdown()
    return result


def main(args) -> int:
    return show(bench_serve(args.model, panx_dir(args.data), args.requests, args.concurrency, args.runtime,
                            args.max_batch_size), args.json)
