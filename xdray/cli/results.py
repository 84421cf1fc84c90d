"""The commands on a finished run: `xdray report CONFIG|RUN_DIR` (frontier table, Pareto set,
plots) and `xdray export CONFIG|RUN_DIR` (the recommended, or a chosen, student for serving)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_report_export_parsers(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="frontier table, Pareto set, plots and TensorBoard HParams of a run")
    _target_arguments(report)
    report.add_argument("--study", metavar="NAME", help="a study over another space file (RUN/studies/NAME), "
                        "e.g. an ablation; default: the experiment's own")
    report.set_defaults(handler=cmd_report)
    export = sub.add_parser("export", help="export the recommended (or a chosen) student for serving")
    _target_arguments(export)
    export.add_argument("--trial", metavar="ID", help="a trial id from frontier.csv (default: the recommended)")
    export.set_defaults(handler=cmd_export)


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="CONFIG|RUN_DIR",
                        help="the experiment file (its run directory) or the run directory itself")
    parser.add_argument("--out", metavar="DIR", help="with an experiment file: its run directory, where "
                        "`xdray run --out DIR` put it (default: runs/<experiment name>)")


def _run_dir(args: argparse.Namespace, command: str, study: str | None = None) -> Path:
    from xdray import pipeline
    from xdray.cli.targets import require_run, run_dir_of

    run_dir = run_dir_of(args.target, args.out, command)
    pipeline.pull_run(run_dir, study)
    require_run(run_dir, args.target, command)
    return run_dir


def cmd_report(args: argparse.Namespace) -> int:
    from xdray import pipeline
    from xdray.config import load_run_config
    from xdray.data.sources import load_labelled

    run_dir = _run_dir(args, "report", args.study)
    cfg = load_run_config(run_dir)
    pipeline.report(cfg, run_dir, load_labelled(cfg.data, cfg.base_dir), run_dir / "teacher", args.study)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from xdray import pipeline

    pipeline.export(_run_dir(args, "export"), args.trial)
    return 0
