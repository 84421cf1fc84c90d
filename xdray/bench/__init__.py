"""Benchmarks, side by side in one run, reported as ratios (these machines are noisy); each prints
a JSON object as its last line.

`xdray bench transfer`: the transfer-set build, a hand-written loop against the Ray Data pipeline.
`xdray bench train`: student training, a padded loop against xdray's trial loop.
`xdray bench export`: a student in eager fp32 / int8 and ONNX Runtime fp32 / int8.
`xdray bench serve`: the Ray Serve deployment under load, request batching on and off.
`xdray bench api`: the Python API (xdray.load) against `xdray predict` on the same lines.
"""

from __future__ import annotations


def main(args) -> int:
    if args.bench == "transfer":
        from xdray.bench.transfer import main as run
    elif args.bench == "export":
        from xdray.bench.export import main as run
    elif args.bench == "serve":
        from xdray.bench.serve import main as run
    elif args.bench == "api":
        from xdray.bench.api import main as run
    else:
        from xdray.bench.train import main as run
    return run(args)
