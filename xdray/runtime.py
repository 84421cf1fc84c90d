"""Ray connection, run directories, seeds and progress settings.

Inside a Ray job (RAY_ADDRESS set, or runtime.address) xdray connects to that cluster; elsewhere
it starts a local one bound to 127.0.0.1 with the dashboard off.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xdray.config import ExperimentConfig, RuntimeConfig, dump_config
from xdray.errors import XdrayError

log = logging.getLogger(__name__)


def progress_enabled(setting: str = "auto") -> bool:
    """Progress bars for people, quiet under CI: "auto" is on only on a terminal outside CI."""
    if setting != "auto":
        return setting == "on"
    return not os.environ.get("CI") and sys.stderr.isatty()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def init_ray(cfg: RuntimeConfig) -> None:
    """Connect to the configured cluster or start a local one (idempotent)."""
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    quiet = not progress_enabled(cfg.progress)
    if quiet:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return
    env = {"TOKENIZERS_PARALLELISM": "false", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    if os.environ.get("PYTHONPATH"):  # workers import what the driver imports (e.g. a pinned copy)
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if quiet:
        env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.update(env)  # Ray Train's controller reads some of these in this process
    # The dashboard also serves the state API that Ray Train's controller polls; bind it to loopback.
    ray.init(num_cpus=cfg.num_cpus or None, include_dashboard=True, dashboard_host="127.0.0.1",
             logging_level=logging.WARNING, runtime_env={"env_vars": env})


def largest_node_cpus(required: dict[str, float] | None = None) -> float:
    """CPUs of the largest live node holding the `required` resources (e.g. {"GPU": 1}): one
    process cannot use more than one node's cores, however many the cluster has."""
    import ray

    required = required or {}
    sizes = [node["Resources"].get("CPU", 0.0) for node in ray.nodes()
             if node.get("Alive") and all(node["Resources"].get(k, 0.0) >= v for k, v in required.items())]
    return max(sizes, default=1.0) or 1.0


def run_directory(cfg: ExperimentConfig, out: str | None) -> Path:
    """--out if given, else <runtime.storage_path>/<name>, else runs/<name> under the CWD."""
    if out:
        return Path(out).expanduser().resolve()
    from xdray.storage import CACHE, is_remote

    storage = cfg.runtime.storage_path
    if is_remote(storage):
        return (CACHE / cfg.name).resolve()  # the local copy; storage holds the run
    root = Path(storage.removeprefix("file://")).expanduser() if storage else Path("runs")
    return (root / cfg.name).resolve()


def prepare_run_directory(run_dir: Path, cfg: ExperimentConfig) -> None:
    """Create the run directory (attached to its storage) and check that it takes files."""
    from xdray import storage

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if storage.is_remote(cfg.runtime.storage_path):
            storage.attach(run_dir, f"{cfg.runtime.storage_path.rstrip('/')}/{cfg.name}")
        with tempfile.TemporaryFile(dir=run_dir, prefix=".xdray-write-probe."):
            pass
    except OSError as err:
        raise XdrayError(f"run directory {run_dir}: cannot write: {err.strerror or err}") from None


def save_run_config(run_dir: Path, cfg: ExperimentConfig) -> None:
    """RUN/config.yaml: the resolved config of the last command that got past its inputs (what
    `xdray report` and `xdray export` read back)."""
    from xdray import storage

    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    storage.push(run_dir, "config.yaml")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename, so readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def publish_directory(staging: Path, final: Path) -> None:
    """Replace `final` with the finished `staging` directory (the old one is removed only after
    the new one is complete, so a crash never leaves neither)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    if old.exists():
        shutil.rmtree(old)
