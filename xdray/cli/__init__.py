"""Command line: `xdray run|teacher|transfer|train|tune|config CONFIG [--out DIR] [--set KEY=VALUE ...]`,
`xdray report|export RUN_DIR`, `xdray predict --model DIR [FILE]`, `xdray serve --model DIR`,
`xdray doctor [CONFIG]`, `xdray bench ...`.

Bad input (config, data, model files) prints one clear line and exits with code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from xdray import __version__
from xdray.cli.bench import add_bench_parser
from xdray.cli.checks import add_config_parser, add_doctor_parser
from xdray.cli.results import add_report_export_parsers
from xdray.cli.stages import add_stage_parsers
from xdray.cli.tagging import add_predict_serve_parsers
from xdray.core.errors import XdrayError

log = logging.getLogger("xdray")


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser, each beside its command (xdray.cli.stages, checks, results, tagging,
    bench); a parsed command's function is its `handler`."""
    parser = argparse.ArgumentParser(prog="xdray", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"xdray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_stage_parsers(sub)
    add_config_parser(sub)
    add_doctor_parser(sub)
    add_report_export_parsers(sub)
    add_predict_serve_parsers(sub)
    add_bench_parser(sub)
    return parser


def _configure_logging(verbose: bool) -> None:
    from xdray.core.runtime import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.handler(args)
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

