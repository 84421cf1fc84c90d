"""The commands on a finished run directory: `xdray report RUN_DIR` (frontier table, Pareto set,
plots) and `xdray export RUN_DIR` (the recommended, or a chosen, student for serving)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_report_export_parsers(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="frontier table, Pareto set, plots and TensorBoard HParams of a run")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--study", metavar="NAME", help="a study over another space file (RUN/studies/NAME), "
                        "e.g. an ablation; default: the experiment's own")
    report.set_defaults(handler=cmd_report)
    export = sub.add_parser("export", help="export the recommended (or a chosen) student for serving")
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--trial", metavar="ID", help="a trial id from frontier.csv (default: the recommended)")
    export.set_defaults(handler=cmd_export)


def cmd_report(args: argparse.Namespace) -> int:
    from xdray import pipeline
    from xdray.config import load_run_config
    from xdray.data.sources import load_labelled

    run_dir = Path(args.run_dir).resolve()
    pipeline.pull_run(run_dir, args.study)
    cfg = load_run_config(run_dir)
    pipeline.report(cfg, run_dir, load_labelled(cfg.data, cfg.base_dir), run_dir / "teacher", args.study)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from xdray import pipeline

    run_dir = Path(args.run_dir).resolve()
    pipeline.pull_run(run_dir)
    pipeline.export(run_dir, args.trial)
    return 0
