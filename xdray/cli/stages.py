"""The stage commands on an experiment file: `xdray run|teacher|transfer|train|tune CONFIG [--out DIR]
[--set KEY=VALUE ...]`. The config is read before the pipeline's imports (torch, transformers,
datasets: about 6 s), so a typo in it fails in a second."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xdray.config import ExperimentConfig

STAGES = (("run", "run every stage of an experiment, skipping finished ones"),
          ("teacher", "build or load, fine-tune, evaluate and save the teacher"),
          ("transfer", "build the transfer set (teacher logits and hidden states) on Ray Data"),
          ("train", "distil one student through the whole stage plan (no Tune)"),
          ("tune", "run the Ray Tune study over the search space, then the report"))


def experiment_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG, --out and --set, as every command on an experiment file takes them."""
    parser.add_argument("config", help="experiment YAML file, e.g. experiments/quickstart.yaml")
    parser.add_argument("--out", metavar="DIR", help="run directory (default: runs/<experiment name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set student.hidden_size=200 (repeatable)")


def add_stage_parsers(sub: argparse._SubParsersAction) -> None:
    handlers = {"run": cmd_run, "teacher": cmd_teacher, "transfer": cmd_transfer, "train": cmd_train,
                "tune": cmd_tune}
    for name, help_text in STAGES:
        command = sub.add_parser(name, help=help_text, description=help_text)
        experiment_arguments(command)
        command.set_defaults(handler=handlers[name])
        if name == "tune":
            command.add_argument("--space", metavar="FILE", help="search-space YAML (default: search.space)")
            command.add_argument("--resume", action="store_true",
                                 help="continue the interrupted Tune experiment in the run directory")


def load_config(args: argparse.Namespace) -> "ExperimentConfig":
    """The experiment file with its --set overrides (light imports only)."""
    from xdray.config import load_experiment
    from xdray.core.loader import parse_override

    overrides = dict(parse_override(o) for o in args.overrides)
    return load_experiment(args.config, overrides)


def _context(args: argparse.Namespace, unlabelled: bool = True):
    cfg = load_config(args)
    from xdray import pipeline

    return pipeline.context(cfg, args.out, unlabelled)


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


def cmd_run(args: argparse.Namespace) -> int:
    """Every stage: teacher, transfer set, Tune study, latency, report, export of the recommended
    student. Each skips itself when its output is current, so a rerun resumes."""
    ctx = _context(args)
    from xdray import pipeline

    return pipeline.run(ctx)
