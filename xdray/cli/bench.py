"""`xdray bench transfer|train|export|api|serve`: xdray against the straightforward way, side by
side (the benchmarks themselves are in xdray.bench)."""

from __future__ import annotations

import argparse

from xdray.cli.tagging import RUNTIMES

PANX_HELP = "the PAN-X files (default: $XDRAY_PANX, else ../shared/data/panx)"


def _output(parser: argparse.ArgumentParser, data: bool = True) -> None:
    """--json, and --data where the benchmark reads PAN-X text."""
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    if data:
        parser.add_argument("--data", metavar="DIR", help=PANX_HELP)


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks: xdray against the straightforward way, side by side")
    bench.set_defaults(handler=cmd_bench)
    bench_sub = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK", help="one of:")
    transfer = bench_sub.add_parser("transfer", help="transfer-set build: naive loop vs xdray's Ray Data pipeline")
    transfer.add_argument("--n", type=int, default=1500, help="sentences (PAN-X text where present)")
    transfer.add_argument("--teacher", help="a teacher directory (default: a random BERT of --hidden x --layers; "
                          "the default dims are BERT-base's, which time like mBERT's)")
    transfer.add_argument("--hidden", type=int, default=768, help="the random teacher's hidden size")
    transfer.add_argument("--layers", type=int, default=12, help="the random teacher's layers")
    transfer.add_argument("--layer", type=int, default=6, help="teacher layer to store (the paper's)")
    transfer.add_argument("--max-length", type=int, default=64, help="sub-tokens a sentence")
    _output(transfer)
    train = bench_sub.add_parser("train", help="student training: padded loop vs xdray's trial loop (tokens/s)")
    train.add_argument("--n", type=int, default=4000, help="sentences (PAN-X text where present)")
    train.add_argument("--embedding-dim", type=int, default=100, help="the student's word-embedding dim")
    train.add_argument("--hidden-size", type=int, default=200, help="the student's BiLSTM hidden size")
    train.add_argument("--max-length", type=int, default=64, help="sub-tokens a sentence")
    train.add_argument("--batch-size", type=int, default=32, help="sentences a batch")
    _output(train)
    export = bench_sub.add_parser("export", help="a student in eager fp32 / int8 and ONNX Runtime fp32 / int8")
    export.add_argument("--model", metavar="DIR", help="an exported student (default: a random-weight E100-H200; "
                        "dev F1 needs a trained one)")
    export.add_argument("--langs", default="en", help="PAN-X dev languages for F1, comma-separated")
    export.add_argument("--dev-per-language", type=int, default=1000, help="dev sentences a language")
    export.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="batch sizes to time")
    export.add_argument("--threads", type=int, default=1, help="CPU threads for every runtime")
    export.add_argument("--runs", type=int, default=30, help="timed runs per batch (median)")
    _output(export)
    api = bench_sub.add_parser("api", help="the Python API (xdray.load) against `xdray predict` on the same lines")
    api.add_argument("--model", required=True, metavar="DIR", help="an exported student, or a run directory")
    api.add_argument("--input", required=True, metavar="FILE", help="raw text, one sentence a line")
    api.add_argument("--threads", type=int, default=1, help="CPU threads for both")
    _output(api, data=False)
    serve = bench_sub.add_parser("serve", help="Ray Serve under load, request batching on and off")
    serve.add_argument("--model", metavar="DIR", help="an exported student (default: a random-weight E100-H200)")
    serve.add_argument("--requests", type=int, default=640, help="requests per concurrency and mode")
    serve.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="clients at once")
    serve.add_argument("--runtime", choices=RUNTIMES, default="auto", help="the replica's engine (auto: fp32 ONNX)")
    serve.add_argument("--max-batch-size", type=int, default=32, help="lines a replica tags together")
    _output(serve)


def cmd_bench(args: argparse.Namespace) -> int:
    from xdray import bench

    return bench.main(args)
