"""Command line: `xdray run|teacher|transfer|train|tune|config CONFIG [--out DIR] [--set KEY=VALUE ...]`,
`xdray report|export RUN_DIR`, `xdray predict --model DIR [FILE]`, `xdray doctor [CONFIG]`, `xdray bench ...`.

Bad input (config, data, model files) prints one clear line and exits with code 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from xdray import __version__
from xdray.errors import XdrayError

if TYPE_CHECKING:
    from xdray.config import ExperimentConfig
    from xdray.data.sources import LabelledData

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
    predict = sub.add_parser("predict", help="tag whitespace-tokenised text, one sentence per line")
    predict.add_argument("--model", required=True, metavar="DIR", help="an exported student directory")
    predict.add_argument("input", nargs="?", default="-", metavar="FILE", help="input text (default: stdin)")
    predict.add_argument("--format", choices=("conll", "json"), default="conll")
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
    train = bench_sub.add_parser("train", help="student training: padded loop vs xdray's trial loop (tokens/s)")
    train.add_argument("--n", type=int, default=4000, help="sentences (PAN-X text where present)")
    train.add_argument("--embedding-dim", type=int, default=100)
    train.add_argument("--hidden-size", type=int, default=200)
    train.add_argument("--max-length", type=int, default=64)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser


def _load(args: argparse.Namespace):
    from xdray.config import load_experiment, parse_override

    overrides = dict(parse_override(o) for o in args.overrides)
    return load_experiment(args.config, overrides)


def cmd_config(args: argparse.Namespace) -> int:
    from xdray.config import dump_config

    print(dump_config(_load(args)), end="")
    return 0


@dataclass
class Context:
    """What every stage command starts from: the config, the run directory, the labelled data."""

    cfg: "ExperimentConfig"
    run_dir: Path
    data: "LabelledData"


def _context(args: argparse.Namespace, unlabelled: bool = True) -> Context:
    """Config, data and run directory. Every data file is read first (the unlabelled text too,
    unless the command builds no transfer set): bad data fails before anything is written, not
    after an hour of teacher fine-tuning."""
    from xdray.data.sources import check_unlabelled, load_labelled
    from xdray.runtime import prepare_run_directory, run_directory, seed_everything

    cfg = _load(args)
    seed_everything(cfg.seed)
    data = load_labelled(cfg)
    if unlabelled:
        check_unlabelled(cfg, data)
    run_dir = run_directory(cfg, args.out)
    prepare_run_directory(run_dir, cfg)
    log.info("data %s: %s sentences over %d languages", data.fingerprint,
             ", ".join(f"{split} {len(ds)}" for split, ds in data.splits.items()), len(data.languages))
    return Context(cfg, run_dir, data)


def _teacher(ctx: Context):
    from xdray.runtime import progress_enabled, save_run_config
    from xdray.teacher import run_teacher_stage

    result = run_teacher_stage(ctx.cfg, ctx.data, ctx.run_dir, progress_enabled(ctx.cfg.runtime.progress))
    save_run_config(ctx.run_dir, ctx.cfg)  # only once the data and the teacher are known to be good
    dev = result.metrics["dev"]
    print(f"teacher {'(cached) ' if result.skipped else ''}{result.path}: dev F1 mean "
          f"{dev['f1_mean']:.4f} (std {dev['f1_std']:.4f}, micro {dev['f1_micro']:.4f}); "
          + ", ".join(f"{lang} {f1:.3f}" for lang, f1 in dev["per_language"].items()))
    return result


def _transfer(ctx: Context, teacher):
    from xdray.transfer import build_transfer_set

    result = build_transfer_set(ctx.cfg, ctx.run_dir, teacher.path, teacher.fingerprint, ctx.data)
    m = result.manifest
    size = sum((result.path / f["file"]).stat().st_size for f in m["files"])
    print(f"transfer {'(cached) ' if result.skipped else ''}{result.path}: {m['rows']} sentences, "
          f"{m['tokens']} tokens, {len(m['files'])} shards, {size / max(m['tokens'], 1):.0f} bytes/token")
    return result


def cmd_teacher(args: argparse.Namespace) -> int:
    _teacher(_context(args, unlabelled=False))
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    ctx = _context(args)
    _transfer(ctx, _teacher(ctx))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from xdray.distill.trial import prepare, run_trial
    from xdray.tuning import needs_transfer, trial_key

    ctx = _context(args)
    teacher = _teacher(ctx)
    transfer = _transfer(ctx, teacher) if needs_transfer(ctx.cfg) else None
    trial_dir = ctx.run_dir / "train" / trial_key(ctx.cfg)  # a changed setting never resumes another's checkpoint
    td = prepare(ctx.cfg, teacher.path, transfer.path if transfer else None, ctx.data)
    final = run_trial(ctx.cfg, trial_dir, td)
    dev, teacher_f1 = final["dev"], teacher.metrics["dev"]["f1_mean"]
    print(f"student {trial_dir}: dev F1 mean {dev['f1_mean']:.4f} (std {dev['f1_std']:.4f}; retention "
          f"{dev['f1_mean'] / max(teacher_f1, 1e-9):.3f} of the teacher's {teacher_f1:.4f}); "
          + ", ".join(f"{lang} {f1:.3f}" for lang, f1 in dev["per_language"].items())
          + f"; {final['params']} parameters; {final['wall_time_s']:.0f}s")
    return 0


def _space(cfg: "ExperimentConfig", path: str | None):
    from xdray.config import SearchSpace, config_to_dict, load_space

    if path is None and cfg.search.space is None:
        return SearchSpace()
    return load_space(Path(path) if path else cfg.resolve_path(cfg.search.space), config_to_dict(cfg))


def _tune(ctx: Context, space_file: str | None, resume: bool) -> int:
    """Teacher and transfer set (cached), the Tune study, then latency and the report. Returns
    the exit code: 1 when a trial failed after its retries."""
    from xdray.runtime import progress_enabled
    from xdray.tuning import needs_transfer, run_study, transfer_key, transfer_variants

    space = _space(ctx.cfg, space_file)
    variants = transfer_variants(ctx.cfg, space)
    teacher = _teacher(ctx)
    transfers = {transfer_key(v): _transfer(Context(v, ctx.run_dir, ctx.data), teacher).path
                 for v in variants if needs_transfer(v) or "distill.stages" in space.keys}
    study = study_name(ctx.cfg, space_file)
    results = run_study(ctx.cfg, space, ctx.run_dir, teacher.path, transfers,
                        resume=resume, progress=progress_enabled(ctx.cfg.runtime.progress), study=study)
    failed = [r for r in results if r.status == "error"]
    print(f"tune {ctx.run_dir / 'tune'}: {len(results)} trials, "
          + ", ".join(f"{n} {status}" for status in ("done", "stopped", "error")
                      if (n := sum(r.status == status for r in results))))
    for r in failed:
        print(f"  trial {r.key} failed: {(r.error or '').splitlines()[0] if r.error else ''}", file=sys.stderr)
    if len(failed) == len(results):
        raise XdrayError(f"every trial failed; see {ctx.run_dir / 'tune'} for the logs")
    _report(ctx.cfg, ctx.run_dir, ctx.data, teacher.path, study)
    return 1 if failed else 0


def study_name(cfg: "ExperimentConfig", space_file: str | None) -> str | None:
    """None for the experiment's own study (search.space); the file's stem for another space
    file, whose index and report then go to RUN/studies/<stem>/."""
    if space_file is None or (cfg.search.space and Path(space_file).resolve() == cfg.resolve_path(cfg.search.space).resolve()):
        return None
    return Path(space_file).stem


def _report(cfg: "ExperimentConfig", run_dir: Path, data: "LabelledData", teacher_dir: Path,
            study: str | None = None) -> None:
    from transformers import AutoTokenizer

    from xdray.data.encode import encode_dataset
    from xdray.latency import study_latency
    from xdray.report import load_study, write_report
    from xdray.tuning import read_index

    keys = [t.key for t in read_index(run_dir, study)[0] if t.status == "done"]
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    dev_ids = encode_dataset(tokenizer, data.splits["dev"], cfg.data.max_length, with_labels=False).input_ids
    latency = study_latency(cfg, run_dir, teacher_dir, keys, dev_ids, tokenizer.pad_token_id, study)
    path, rows = write_report(load_study(run_dir, cfg, latency, study), run_dir, study)
    best = next((r for r in rows if r["recommended"]), None)
    print(f"report {path}: {len(rows)} frontier rows, {sum(r['pareto'] for r in rows)} on the Pareto front; "
          + (f"recommended {best['trial_id']} (dev F1 {best['f1_mean']:.4f}, retention {best['retention']:.3f}, "
             f"compression {best['compression']:g}x)" if best else "no student meets report.min_retention"))


def cmd_tune(args: argparse.Namespace) -> int:
    return _tune(_context(args), args.space, args.resume)


def cmd_report(args: argparse.Namespace) -> int:
    from xdray.config import load_run_config
    from xdray.data.sources import load_labelled

    run_dir = Path(args.run_dir).resolve()
    _pull_run(run_dir, args.study)
    cfg = load_run_config(run_dir)
    _report(cfg, run_dir, load_labelled(cfg), run_dir / "teacher", args.study)
    return 0


def _pull_run(run_dir: Path, study: str | None = None) -> None:
    """Where RUN_DIR is the local copy of a run on storage: fetch what report and export read
    (for a named study, its index and the trials it lists)."""
    from xdray import storage
    from xdray.tuning import read_index

    if storage.remote_of(run_dir) is None:
        return
    for part in ("config.yaml", "teacher", "trials/index.json", "eval/latency.json", "report", "studies"):
        storage.pull(run_dir, part, refresh=True)
    for trial in read_index(run_dir, study)[0]:
        storage.pull(run_dir, f"trials/{trial.key}", refresh=True)


def _export(run_dir: Path, trial: str | None) -> Path:
    from xdray.export import export_student

    path = export_student(run_dir, trial)
    print(f"export {path}: try `xdray predict --model {path} FILE`")
    return path


def cmd_export(args: argparse.Namespace) -> int:
    _pull_run(Path(args.run_dir).resolve())
    _export(Path(args.run_dir).resolve(), args.trial)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from xdray.export import format_conll, format_json, read_sentences, tag

    if args.input == "-":
        sentences = list(read_sentences(sys.stdin))
    else:
        try:
            with open(args.input, encoding="utf-8") as handle:
                sentences = list(read_sentences(handle))
        except (OSError, UnicodeDecodeError) as err:
            raise XdrayError(f"{args.input}: cannot read: {err}") from None
    tags = tag(Path(args.model), sentences)
    sys.stdout.write((format_json if args.format == "json" else format_conll)(sentences, tags))
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
    code = _tune(ctx, None, resume=False)
    if json.loads((ctx.run_dir / "report" / "recommended.json").read_text())["trial_id"]:
        _export(ctx.run_dir, None)
    return code


def cmd_bench(args: argparse.Namespace) -> int:
    from xdray import bench

    return bench.main(args) if args.bench == "transfer" else bench.main_train(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "teacher": cmd_teacher, "transfer": cmd_transfer, "train": cmd_train, "tune": cmd_tune,
    "report": cmd_report, "export": cmd_export, "doctor": cmd_doctor, "predict": cmd_predict, "config": cmd_config, "bench": cmd_bench,
}


# Errors of the machine, not of xdray: a read-only or full disk, a file where a directory should be.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST}


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING)
    logging.getLogger("xdray").setLevel(logging.DEBUG if verbose else logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except XdrayError as err:  # one line, even where a library's message spans several
        print("xdray: error: " + " ".join(line.strip() for line in str(err).splitlines() if line.strip()), file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in UNWRITABLE or not err.filename:
            raise
        print(f"xdray: error: cannot write {err.filename}: {err.strerror}; check that the run directory "
              "is writable and its disk has space, then rerun: finished stages are kept", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xdray: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
