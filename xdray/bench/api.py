"""`xdray bench api`: tagging raw text from Python (`xdray.load(...).pipe`) against `xdray predict`
on the same lines and the same threads, in words/s. predict is timed twice, on the whole file
and on its first line, so its start-up (imports, model load) is told apart from its tagging; the
two must print the same entities."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from xdray.bench.common import show


def _predict(model: str, path: Path, threads: int) -> tuple[float, list[dict]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "xdray", "predict", "--model", model, "--threads", str(threads),
                           "--progress", "off", str(path)], capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"xdray predict failed: {done.stderr[-2000:]}")
    return seconds, [json.loads(line) for line in done.stdout.splitlines()]


def bench_api(model: str, input_path: Path, threads: int) -> dict:
    import tempfile

    import xdray
    from xdray.core.runtime import torch_threads

    lines = [line.rstrip("\n") for line in input_path.open(encoding="utf-8")]
    words = sum(len(line.split()) for line in lines)
    with torch_threads(threads):  # given back: the bench may run inside another program (the tests)
        started = time.perf_counter()
        tagger = xdray.load(model, threads=threads)
        loaded = time.perf_counter()
        entities = list(tagger.pipe(lines))
        tagged = time.perf_counter()
    whole, printed = _predict(model, input_path, threads)
    with tempfile.TemporaryDirectory(prefix="xdray-bench-") as tmp:
        first = Path(tmp) / "first.txt"
        first.write_text(lines[0] + "\n", encoding="utf-8")
        startup, _ = _predict(model, first, threads)
    api_rate = words / (tagged - loaded)
    predict_rate = words / max(whole - startup, 1e-9)
    return {"lines": len(lines), "words": words, "threads": threads,
            "api_load_s": round(loaded - started, 3), "api_words_per_s": round(api_rate, 1),
            "predict_wall_s": round(whole, 2), "predict_startup_s": round(startup, 2),
            "predict_words_per_s": round(predict_rate, 1), "predict_words_per_s_with_startup": round(words / whole, 1),
            "api_over_predict": round(api_rate / predict_rate, 3),
            "same_entities": [r["entities"] for r in printed] == entities}


def main(args) -> int:
    return show(bench_api(args.model, Path(args.input), args.threads), args.json)
