"""What a command's path names: report and export take an experiment file (its run directory, or
--out DIR, as every other command has it) or a run directory; predict and serve take an export
folder, a run directory (its recommended student) or an experiment file. Where the path is
none of these, the error says what was found and the command that would work."""

from __future__ import annotations

from pathlib import Path

from xdray.core.errors import XdrayError
from xdray.core.rundir import CONFIG_FILE

EXPERIMENT_SUFFIXES = (".yaml", ".yml")


def experiment_run_dir(path: Path, out: str | None) -> Path:
    """The run directory of the experiment file `path`: --out where given, else its default."""
    from xdray.config import load_experiment
    from xdray.core import store
    from xdray.core.rundir import prepare_run_directory, run_directory

    cfg = load_experiment(path)
    run_dir = run_directory(cfg.name, cfg.runtime.storage_path, out)
    if store.is_remote(cfg.runtime.storage_path):  # the local copy, attached to the run on storage
        prepare_run_directory(run_dir, cfg.name, cfg.runtime.storage_path)
    return run_dir


def run_dir_of(target: str, out: str | None, command: str) -> Path:
    """The run directory `xdray report|export TARGET [--out DIR]` means (not yet checked to hold a
    run: on remote storage it is pulled first, see `require_run`)."""
    path = Path(target).expanduser()
    if path.is_file():
        if path.suffix not in EXPERIMENT_SUFFIXES:
            raise XdrayError(f"{target}: not an experiment file (.yaml) or a run directory; e.g. "
                             f"`xdray {command} experiments/quickstart.yaml`")
        return experiment_run_dir(path, out)
    if out:
        raise XdrayError(f"--out {out}: goes with an experiment file (`xdray {command} EXPERIMENT.yaml --out "
                         f"{out}`); {target} names the run directory itself")
    if not path.exists():
        raise XdrayError(f"{target}: does not exist; expected an experiment file or a run directory, e.g. "
                         f"`xdray {command} experiments/quickstart.yaml`")
    return path.resolve()


def require_run(run_dir: Path, target: str, command: str) -> None:
    """`run_dir` holds a run (its config.yaml), or an error naming what it holds instead."""
    if (run_dir / CONFIG_FILE).exists():
        return
    if not Path(target).is_file():
        if (run_dir / "config.json").exists():
            raise XdrayError(f"{target}: an exported student, not a run directory; `xdray {command}` takes the "
                             f"experiment file or its run directory (the export's is {run_dir.parent.parent})")
        runs = sorted(p.parent for p in run_dir.glob(f"*/{CONFIG_FILE}"))
        if runs:
            raise XdrayError(f"{target}: not a run directory, but it holds {len(runs)}: e.g. "
                             f"`xdray {command} {runs[0]}`")
    raise XdrayError(f"{run_dir}: no run here yet (no {CONFIG_FILE}); run `xdray run` on the experiment "
                     "first" + ("" if not Path(target).is_file() else f": `xdray run {target}`"))


def model_target(model: str) -> str:
    """What --model names as a path Tagger loads: an experiment file becomes its run directory
    (whose recommended student is loaded); anything else is passed on as it is."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix in EXPERIMENT_SUFFIXES:
        run_dir = experiment_run_dir(path, None)
        require_run(run_dir, model, "predict")
        return str(run_dir)
    return model
