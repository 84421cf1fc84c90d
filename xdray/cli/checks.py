"""`xdray config CONFIG` (validate an experiment file, print the resolved config) and `xdray doctor
[CONFIG]` (check the environment and say how to fix what is wrong)."""

from __future__ import annotations

import argparse
import sys

from xdray.cli.stages import experiment_arguments, load_config

CONFIG_HELP = "validate an experiment file and print the resolved config"


def add_config_parser(sub: argparse._SubParsersAction) -> None:
    config = sub.add_parser("config", help=CONFIG_HELP, description=CONFIG_HELP)
    experiment_arguments(config)
    config.set_defaults(handler=cmd_config)


def add_doctor_parser(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser("doctor", help="check versions, Ray, GPUs, storage and data; say how to fix problems")
    doctor.add_argument("config", nargs="?", help="an experiment file to check as well")
    doctor.add_argument("--out", metavar="DIR", help="run directory to check for writing")
    doctor.set_defaults(handler=cmd_doctor)


def cmd_config(args: argparse.Namespace) -> int:
    from xdray.config import dump_config

    print(dump_config(load_config(args)), end="")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from xdray.doctor import render, run_checks

    checks = run_checks(args.config, args.out)
    sys.stdout.write(render(checks))
    return 0 if all(c.ok for c in checks) else 1
