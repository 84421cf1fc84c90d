"""The run directory: where it is, what it holds, and the names of its parts.

RUN/ (runs/<experiment> locally, or a local copy of `runtime.storage_path`/<experiment>):
  config.yaml                 the resolved config of the last command that got past its inputs
  teacher/                    the teacher (model, tokenizer, metrics.json, fingerprint.json)
  transfer/<fingerprint>/     transfer sets (Parquet shards + manifest.json)
  trials/<key>/               one student each (checkpoint/, student/, metrics.json; tensorboard/ while training)
  trials/index.json           the experiment's own study: its trials and searched keys
  tune/                       Ray Tune's records of the experiment's own study
  eval/latency.json           the study's latencies
  report/                     frontier.csv / .md, plots, recommended.json, tensorboard/
  export/<key>/               exported students
  studies/<name>/             index.json, latency.json, report/ and tune/ of a study over another space file
  train/<key>/                students trained alone by `xdray train`
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from xdray.core import store
from xdray.core.errors import XdrayError
from xdray.core.files import atomic_write_text

CONFIG_FILE = "config.yaml"
TEACHER_DIR = "teacher"
TRANSFER_DIR = "transfer"
TRIALS_DIR = "trials"
TUNE_DIR = "tune"
STUDIES_DIR = "studies"
EXPORT_DIR = "export"
TRAIN_DIR = "train"
MAIN_INDEX = f"{TRIALS_DIR}/index.json"
MAIN_LATENCY = "eval/latency.json"
MAIN_REPORT = "report"


def study_path(study: str | None, main: str) -> str:
    """A study's part, relative to the run directory: `main` for the experiment's own study,
    studies/<study>/<basename of main> for a named one (e.g. "eval/latency.json" ->
    "studies/stages/latency.json")."""
    return main if study is None else f"{STUDIES_DIR}/{study}/{Path(main).name}"


def trial_dir(key: str) -> str:
    return f"{TRIALS_DIR}/{key}"


def run_directory(name: str, storage_path: str | None, out: str | None) -> Path:
    """--out if given, else <storage_path>/<name>, else runs/<name> under the CWD."""
    if out:
        return Path(out).expanduser().resolve()
    if store.is_remote(storage_path):
        return (store.CACHE / name).resolve()  # the local copy; storage holds the run
    root = Path(storage_path.removeprefix("file://")).expanduser() if storage_path else Path("runs")
    return (root / name).resolve()


def prepare_run_directory(run_dir: Path, name: str, storage_path: str | None) -> None:
    """Create the run directory (attached to its storage) and check that it takes files."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if store.is_remote(storage_path):
            store.attach(run_dir, f"{storage_path.rstrip('/')}/{name}")
        with tempfile.TemporaryFile(dir=run_dir, prefix=".xdray-write-probe."):
            pass
    except OSError as err:
        raise XdrayError(f"run directory {run_dir}: cannot write: {err.strerror or err}") from None


def save_run_config(run_dir: Path, text: str) -> None:
    """RUN/config.yaml: what `xdray report` and `xdray export` read back."""
    atomic_write_text(run_dir / CONFIG_FILE, text)
    store.push(run_dir, CONFIG_FILE)
