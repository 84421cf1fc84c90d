"""Command line: `xdray run|teacher|transfer|train|tune|config CONFIG [--out DIR] [--set KEY=VALUE ...]`,
`xdray report|export CONFIG|RUN_DIR`, `xdray predict --model MODEL [FILE]`, `xdray serve --model
MODEL`, `xdray doctor [CONFIG]`, `xdray bench ...`.

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

RESUMABLE = ("run", "teacher", "transfer", "train", "tune", "report", "export")  # stages: a rerun resumes
DESCRIPTION = """\
Distil a multilingual transformer NER teacher into tiny BiLSTM students on Ray: the
teacher, its transfer set, a Tune study over student sizes, the accuracy / size / speed
frontier, and the chosen student exported for predict, Python and Ray Serve."""
EPILOG = """first steps:
  xdray run experiments/quickstart.yaml                 every stage, offline, a few minutes
  xdray predict --model runs/quickstart FILE            tag raw text with the recommended student
  xdray serve --model runs/quickstart                   the same over HTTP (GET /docs)
  xdray COMMAND --help                                  a command's flags and their defaults"""


def build_parser() -> argparse.ArgumentParser:
    """Every command's parser, each beside its command (xdray.cli.stages, checks, results, tagging,
    bench); a parsed command's function is its `handler`."""
    parser = argparse.ArgumentParser(prog="xdray", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"xdray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the detail: debug logging, library warnings, Ray's own log lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    add_stage_parsers(sub)
    add_config_parser(sub)
    add_doctor_parser(sub)
    add_report_export_parsers(sub)
    add_predict_serve_parsers(sub)
    add_bench_parser(sub)
    _describe(parser)
    return parser


class DefaultsShown(argparse.HelpFormatter):
    """A flag's default after its help, where it has one worth saying (not None, False or [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        silent = action.default is None or action.default is False or action.default == [] \
            or action.default == argparse.SUPPRESS or action.nargs == 0
        if silent or "default" in text:
            return text
        default = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {default})"


def _describe(parser: argparse.ArgumentParser) -> None:
    """Every subcommand's --help: its one-line help as the description, and each flag's default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                child.description = child.description or helps.get(name)
                child.formatter_class = DefaultsShown
                _describe(child)


def _configure_logging(verbose: bool) -> None:
    from xdray.core.runtime import configure_logging

    configure_logging(logging.DEBUG if verbose else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    from xdray.core.runtime import stop_on_sigterm

    stop_on_sigterm()  # and again after Ray starts, whose core worker installs its own
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
        resumable = args.command in RESUMABLE
        print("xdray: interrupted" + ("; finished stages and trial checkpoints are kept: the same command "
                                      "resumes" if resumable else ""), file=sys.stderr)
        return 130

