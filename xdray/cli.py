"""Command line: `xdray run|teacher|transfer|train|tune|config CONFIG [--out DIR] [--set KEY=VALUE ...]`,
`xdray report|export RUN_DIR`, `xdray predict --model DIR [FILE]`, `xdray serve --model DIR`,
`xdray doctor [CONFIG]`, `xdray bench ...`.

Bad input (config, data, model files) prints one clear line and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from xdray import __version__
from xdray.core.errors import XdrayError

if TYPE_CHECKING:
    from xdray.config import ExperimentConfig

log = logging.getLogger("xdray")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML file, e.g. experiments/quickstart.yaml")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/<experiment name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set student.hidden_size=200 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdray", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xdray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run every stage of an experiment, skipping finished ones"),
                            ("teacher", "build or load, fine-tune, evaluate and save the teacher"),
                            ("transfer", "build the transfer set (teacher logits and hidden states) on Ray Data"),
                            ("train", "distil one student through the whole stage plan (no Tune)"),
                            ("tune", "run the Ray Tune study over the search space, then the report"),
                            ("config", "validate an experiment file and print the resolved config")):
        command = sub.add_parser(name, help=help_text, description=help_text)
        _common(command)
        if name == "tune":
            command.add_argument("--space", metavar="FILE", help="search-space YAML (default: search.space)")
            command.add_argument("--resume", action="store_true",
                                 help="continue the interrupted Tune experiment in the run directory")
    doctor = sub.add_parser("doctor", help="check versions, Ray, GPUs, storage and data; say how to fix problems")
    doctor.add_argument("config", nargs="?", help="an experiment file to check as well")
    doctor.add_argument("--out", metavar="DIR", help="run directory to check for writing")
    report = sub.add_parser("report", help="frontier table, Pareto set, plots and TensorBoard HParams of a run")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--study", metavar="NAME", help="a study over another space file (RUN/studies/NAME), "
                        "e.g. an ablation; default: the experiment's own")
    export = sub.add_parser("export", help="export the recommended (or a chosen) student for serving")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--trial", metavar="ID", help="a trial id from frontier.csv (default: the recommended)")
    predict = sub.add_parser("predict", help="raw text in, entities out: one JSON line per input line")
    predict.add_argument("--model", required=True, metavar="DIR",
                         help="an exported student directory, or a run directory (its recommended student)")
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
    predict.add_argument("--actors", type=int, default=0, help="with --ray: tagging actors (default: one a CPU but one)")
    predict.add_argument("--runtime", choices=("auto", "onnx", "onnx-int8", "torch"), default="auto",
                         help="auto: the export's fp32 ONNX graph (ONNX Runtime), else eager PyTorch")
    predict.add_argument("--progress", choices=("auto", "on", "off"), default="auto")
    predict.add_argument("--threads", type=int, default=0, help="CPU threads for the model (default: all cores)")
    serve = sub.add_parser("serve", help="serve a student with Ray Serve: POST /predict, GET /healthz")
    serve.add_argument("--model", required=True, metavar="DIR",
                       help="an exported student directory, or a run directory (its recommended student)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--runtime", choices=("auto", "onnx", "onnx-int8", "torch"), default="auto")
    serve.add_argument("--replicas", type=int, default=1, help="replicas (the minimum, with --max-replicas)")
    serve.add_argument("--max-replicas", type=int, default=0, help="autoscale up to this many replicas")
    serve.add_argument("--replica-cpus", type=float, default=1.0)
    serve.add_argument("--max-batch-size", type=int, default=32, help="lines tagged together (@serve.batch)")
    serve.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    bench = sub.add_parser("bench", help="benchmarks: xdray against the straightforward way, side by side")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    transfer = bench_sub.add_parser("transfer", help="transfer-set build: naive loop vs xdray's Ray Data pipeline")
    transfer.add_argument("--n", type=int, default=1500, help="sentences (PAN-X text where present)")
    transfer.add_argument("--teacher", help="a teacher directory (default: a random BERT of --hidden x --layers; "
                          "the default dims are BERT-base's, which time like mBERT's)")
    transfer.add_argument("--hidden", type=int, default=768)
    transfer.add_argument("--layers", type=int, default=12)
    transfer.add_argument("--layer", type=int, default=6, help="teacher layer to store (the paper's)")
    transfer.add_argument("--max-length", type=int, default=64)
    transfer.add_argument("--json", action="store_true", help="print only the JSON line")
    transfer.add_argument("--data", metavar="DIR", help="PAN-X files (default: $XDRAY_PANX or ../shared/data/panx)")
    train = bench_sub.add_parser("train", help="student training: padded loop vs xdray's trial loop (tokens/s)")
    train.add_argument("--n", type=int, default=4000, help="sentences (PAN-X text where present)")
    train.add_argument("--embedding-dim", type=int, default=100)
    train.add_argument("--hidden-size", type=int, default=200)
    train.add_argument("--max-length", type=int, default=64)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--json", action="store_true", help="print only the JSON line")
    train.add_argument("--data", metavar="DIR", help="PAN-X files (default: $XDRAY_PANX or ../shared/data/panx)")
    bench_export = bench_sub.add_parser("export", help="a student in eager fp32 / int8 and ONNX Runtime fp32 / int8")
    bench_export.add_argument("--model", metavar="DIR", help="an exported student (default: a random-weight E100-H200; "
                        "dev F1 needs a trained one)")
    bench_export.add_argument("--langs", default="en", help="PAN-X dev languages for F1, comma-separated")
    bench_export.add_argument("--dev-per-language", type=int, default=1000)
    bench_export.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    bench_export.add_argument("--threads", type=int, default=1)
    bench_export.add_argument("--runs", type=int, default=30, help="timed runs per batch (median)")
    bench_export.add_argument("--json", action="store_true", help="print only the JSON line")
    bench_export.add_argument("--data", metavar="DIR", help="PAN-X files (default: $XDRAY_PANX or ../shared/data/panx)")
    bench_api = bench_sub.add_parser("api", help="the Python API (xdray.load) against `xdray predict` on the same lines")
    bench_api.add_argument("--model", required=True, metavar="DIR", help="an exported student, or a run directory")
    bench_api.add_argument("--input", required=True, metavar="FILE", help="raw text, one sentence a line")
    bench_api.add_argument("--threads", type=int, default=1)
    bench_api.add_argument("--json", action="store_true", help="print only the JSON line")
    bench_serve = bench_sub.add_parser("serve", help="Ray Serve under load, request batching on and off")
    bench_serve.add_argument("--model", metavar="DIR", help="an exported student (default: a random-weight E100-H200)")
    bench_serve.add_argument("--requests", type=int, default=640, help="requests per concurrency and mode")
    bench_serve.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    bench_serve.add_argument("--runtime", choices=("auto", "onnx", "onnx-int8", "torch"), default="auto")
    bench_serve.add_argument("--max-batch-size", type=int, default=32)
    bench_serve.add_argument("--json", action="store_true", help="print only the JSON line")
    bench_serve.add_argument("--data", metavar="DIR", help="PAN-X files (default: $XDRAY_PANX or ../shared/data/panx)")
    return parser


def _load(args: argparse.Namespace) -> "ExperimentConfig":
    from xdray.config import load_experiment
    from xdray.core.loader import parse_override

    overrides = dict(parse_override(o) for o in args.overrides)
    return load_experiment(args.config, overrides)


def _context(args: argparse.Namespace, unlabelled: bool = True):
    """The config is read before the pipeline's imports (torch, transformers, datasets: about 6 s),
    so a typo in it fails in a second."""
    cfg = _load(args)
    from xdray import pipeline

    return pipeline.context(cfg, args.out, unlabelled)


def cmd_config(args: argparse.Namespace) -> int:
    from xdray.config import dump_config

    print(dump_config(_load(args)), end="")
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    ctx = _context(args, unlabelled=False)
    from xdray import pipeline

    pipeline.teacher(ctx)
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    ctx = _context(args)
    from xdray import pipeline

    pipeline.transfer(ctx, pipeline.teacher(ctx))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    ctx = _context(args)
    from xdray import pipeline

    final, teacher = pipeline.train_one(ctx)
    dev, teacher_f1 = final["dev"], teacher.metrics["dev"]["f1_mean"]
    print(f"student {final['path']}: dev F1 mean {dev['f1_mean']:.4f} (std {dev['f1_std']:.4f}; retention "
          f"{dev['f1_mean'] / max(teacher_f1, 1e-9):.3f} of the teacher's {teacher_f1:.4f}); "
          + ", ".join(f"{lang} {f1:.3f}" for lang, f1 in dev["per_language"].items())
          + f"; {final['params']} parameters; {final['wall_time_s']:.0f}s")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    ctx = _context(args)
    from xdray import pipeline

    return pipeline.tune(ctx, args.space, args.resume)


def cmd_report(args: argparse.Namespace) -> int:
    from xdray import pipeline
    from xdray.config import load_run_config
    from xdray.data.sources import load_labelled

    run_dir = Path(args.run_dir).resolve()
    pipeline.pull_run(run_dir, args.study)
    cfg = load_run_config(run_dir)
    pipeline.report(cfg, run_dir, load_labelled(cfg), run_dir / "teacher", args.study)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from xdray.serve.deploy import ServeConfig, serve_forever
    from xdray.serve.tagger import model_directory

    model = str(model_directory(args.model).resolve())  # the student folder itself, for every replica
    cfg = ServeConfig(model, args.runtime, args.host, args.port, args.replicas, args.max_replicas,
                      args.replica_cpus, args.max_batch_size, args.batch_wait_ms)
    serve_forever(cfg, lambda url: print(f"serving {model}: POST {url}/predict with {{\"text\": ...}} or "
                                         f"{{\"texts\": [...]}}, GET {url}/healthz; Ctrl-C stops", flush=True))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from xdray import pipeline

    run_dir = Path(args.run_dir).resolve()
    pipeline.pull_run(run_dir)
    pipeline.export(run_dir, args.trial)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from xdray.serve.predict import predict_stream
    from xdray.serve.tagger import Tagger

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


def _predict_on_ray(args: argparse.Namespace) -> int:
    from xdray.serve.corpus import tag_corpus

    if not args.out or args.input == ["-"] or args.pretokenized:
        raise XdrayError("--ray tags raw-text files into --out DIR: give the files (not stdin) and --out "
                         "(--pretokenized is not supported with --ray)")
    lines = tag_corpus(Path(args.model), args.input, Path(args.out), args.format or "parquet", args.actors,
                       args.runtime)
    print(f"predict {args.out}: {lines} lines tagged")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from xdray.doctor import render, run_checks

    checks = run_checks(args.config, args.out)
    sys.stdout.write(render(checks))
    return 0 if all(c.ok for c in checks) else 1


def cmd_run(args: argparse.Namespace) -> int:
    """Every stage: teacher, transfer set, Tune study, latency, report, export of the recommended
    student. Each skips itself when its output is current, so a rerun resumes."""
    ctx = _context(args)
    from xdray import pipeline

    return pipeline.run(ctx)


def cmd_bench(args: argparse.Namespace) -> int:
    from xdray import bench

    return bench.main(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "teacher": cmd_teacher, "transfer": cmd_transfer, "train": cmd_train, "tune": cmd_tune,
    "report": cmd_report, "export": cmd_export, "doctor": cmd_doctor, "predict": cmd_predict, "serve": cmd_serve, "config": cmd_config, "bench": cmd_bench,
}


def _configure_logging(verbose: bool) -> None:
    from xdray.core.runtime import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except XdrayError as err:  # one line, even where a library's message spans several
        print("xdray: error: " + " ".join(line.strip() for line in str(err).splitlines() if line.strip()), file=sys.stderr)
        return 2
    except OSError as err:
        from xdray.core.files import unwritable_message

        message = unwritable_message(err)
        if message is None:
            raise
        print(f"xdray: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xdray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
