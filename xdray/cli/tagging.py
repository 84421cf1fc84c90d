"""The commands that tag text with a student: `xdray predict --model MODEL [FILE]` (one JSON line
per input line, or a corpus on the Ray cluster with --ray) and `xdray serve --model MODEL` (Ray
Serve). MODEL: an export folder, a run directory or an experiment file (xdray.cli.targets)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xdray.core.errors import XdrayError
from xdray.serve.api import DEFAULT_MAX_CHARS, DEFAULT_MAX_TEXTS

RUNTIMES = ("auto", "onnx", "onnx-int8", "torch")
MODEL_HELP = ("an export folder (RUN/export/ID), or a run directory or experiment file: its recommended "
              "student")
# predict's flags that mean something only with --ray, or only without it
RAY_ONLY = {"out": None, "actors": 0}
LOCAL_ONLY = {"pretokenized": False, "threads": 0, "progress": "auto"}


def add_predict_serve_parsers(sub: argparse._SubParsersAction) -> None:
    predict = sub.add_parser("predict", help="raw text in, entities out: one JSON line per input line")
    predict.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP)
    predict.add_argument("input", nargs="*", default=["-"], metavar="FILE",
                         help="input text (default: stdin); with --ray, files or directories")
    predict.add_argument("--pretokenized", action="store_true",
                         help="whitespace-tokenised sentences, one per line: a tag per word (see --format)")
    predict.add_argument("--format", choices=("conll", "json", "parquet"),
                         help="with --pretokenized: conll (default) or json ({tokens, tags} lines); "
                         "with --ray: parquet (default) or json")
    predict.add_argument("--ray", action="store_true", help="tag a large corpus on the Ray cluster (Ray Data "
                         "actor pool) into --out")
    predict.add_argument("--out", metavar="DIR", help="with --ray: the output directory (must not exist)")
    predict.add_argument("--actors", type=int, default=0, help="with --ray: tagging actors (0: one a CPU but one)")
    predict.add_argument("--runtime", choices=RUNTIMES, default="auto",
                         help="auto: the export's fp32 ONNX graph (ONNX Runtime), else eager PyTorch")
    predict.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                         help="a progress bar on stderr (auto: on a terminal; a log line a minute otherwise)")
    predict.add_argument("--threads", type=int, default=0, help="CPU threads for the model (0: all cores)")
    predict.set_defaults(handler=cmd_predict)
    serve = sub.add_parser("serve", help="serve a student with Ray Serve: POST /predict, GET /healthz")
    serve.add_argument("--model", required=True, metavar="MODEL", help=MODEL_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (loopback only by default)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port")
    serve.add_argument("--runtime", choices=RUNTIMES, default="auto", help="auto: the export's fp32 ONNX graph")
    serve.add_argument("--replicas", type=int, default=1, help="replicas (the minimum, with --max-replicas)")
    serve.add_argument("--max-replicas", type=int, default=0, help="autoscale up to this many replicas")
    serve.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs a replica holds (and its threads)")
    serve.add_argument("--max-batch-size", type=int, default=32, help="lines tagged together (@serve.batch)")
    serve.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    serve.add_argument("--max-texts", type=int, default=DEFAULT_MAX_TEXTS, help="texts a request (more: 413)")
    serve.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="characters a text (more: 413)")
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from xdray.cli.targets import model_target
    from xdray.serve.deploy import ServeConfig, serve_forever
    from xdray.serve.tagger import model_directory

    model = str(model_directory(model_target(args.model)).resolve())  # the student folder itself, for every replica
    cfg = ServeConfig(model, args.runtime, args.host, args.port, args.replicas, args.max_replicas,
                      args.replica_cpus, args.max_batch_size, args.batch_wait_ms, args.max_texts, args.max_chars)
    serve_forever(cfg, lambda url: print(f"serving {model}: POST {url}/predict with {{\"text\": ...}} or "
                                         f"{{\"texts\": [...]}}, GET {url}/healthz; Ctrl-C stops", flush=True))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from xdray.cli.targets import model_target
    from xdray.serve.predict import predict_stream
    from xdray.serve.tagger import Tagger

    _check_mode_flags(args)
    args.model = model_target(args.model)
    if args.ray:
        return _predict_on_ray(args)
    if len(args.input) > 1:
        raise XdrayError("predict reads one FILE (or stdin); give several files or directories with --ray")
    if args.format == "parquet" or (args.format and not args.pretokenized):
        raise XdrayError(f"--format {args.format} applies to --pretokenized input (conll, json) or to --ray "
                         "(parquet, json); raw text gives JSON lines of entities")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tagger = Tagger(Path(args.model), runtime=args.runtime, threads=args.threads or None)
    source = args.input[0]
    try:
        handle = sys.stdin if source == "-" else open(source, encoding="utf-8")
    except OSError as err:
        raise XdrayError(f"{source}: cannot read: {err}") from None
    with handle:
        try:
            predict_stream(tagger, handle, sys.stdout, args.pretokenized, args.format or "conll", args.progress)
        except UnicodeDecodeError as err:
            raise XdrayError(f"{source}: not UTF-8 text: {err}") from None
    return 0


def _check_mode_flags(args: argparse.Namespace) -> None:
    """A flag that does nothing in this mode is an error, not silently ignored."""
    unused = RAY_ONLY if not args.ray else LOCAL_ONLY
    given = [name for name, default in unused.items() if getattr(args, name) != default]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise XdrayError(f"{flags}: only with --ray" if not args.ray else f"{flags}: not with --ray "
                         "(it tags raw-text files on the cluster's actors, one thread each)")


def _predict_on_ray(args: argparse.Namespace) -> int:
    from xdray.serve.corpus import tag_corpus

    if not args.out or args.input == ["-"]:
        raise XdrayError("--ray tags raw-text files into --out DIR: give the files (not stdin) and --out")
    lines = tag_corpus(Path(args.model), args.input, Path(args.out), args.format or "parquet", args.actors,
                       args.runtime)
    print(f"predict {args.out}: {lines} lines tagged")
    return 0
