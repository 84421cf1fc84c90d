"""The runtime section, Ray connection, seeds, logging and progress settings.

Inside a Ray job (RAY_ADDRESS set, or runtime.address) xdray connects to that cluster; elsewhere
it starts a local one with its dashboard (and state API) bound to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np

from xdray.core.loader import require

log = logging.getLogger(__name__)

STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "abfss")  # what pyarrow.fs opens


@dataclass(frozen=True)
class RuntimeConfig:
    address: str | None = None  # Ray address; None = RAY_ADDRESS if set, else a local cluster
    num_cpus: int = 0  # local cluster size; 0 = all cores
    # Run directory root: a local or shared (NFS) directory, a file:// URI, or cloud storage
    # (s3://, gs://, ... through pyarrow filesystems); None = runs/<name>.
    storage_path: str | None = None
    progress: Literal["auto", "on", "off"] = "auto"  # auto = off under CI or without a TTY

    def __post_init__(self) -> None:
        require(self.num_cpus >= 0, "num_cpus", "must be >= 0")
        scheme = self.storage_path.split("://", 1)[0] if self.storage_path and "://" in self.storage_path else None
        require(scheme in (None, *STORAGE_SCHEMES), "storage_path",
                f"{scheme}:// is not a storage xdray can use; expected a directory or one of "
                + ", ".join(f"{s}://" for s in STORAGE_SCHEMES))


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_SECONDS = 60  # without a terminal, long work logs a progress line at least this often (nohup logs)


class LogThrottle:
    """Progress lines for nohup logs: `due()` is true at most once every `seconds` (LOG_SECONDS by
    default, read when the throttle is made), counted from the throttle's start."""

    def __init__(self, seconds: float | None = None):
        self.seconds = LOG_SECONDS if seconds is None else seconds
        self.last = time.monotonic()

    def due(self, force: bool = False) -> bool:
        """Whether to log a line now; `force` logs one anyway (a step count's line), and either way
        the next interval starts from this line."""
        now = time.monotonic()
        if not force and now - self.last < self.seconds:
            return False
        self.last = now
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """xdray's log lines (timestamped, one per event) on stderr: the driver's and, forwarded by
    Ray, the workers'. Libraries stay at WARNING; transformers' own chatter at ERROR."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format=LOG_FORMAT, datefmt="%H:%M:%S", level=logging.WARNING)
    logging.getLogger("xdray").setLevel(level)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers reads this when first imported; importing it here would cost a second on every
    # command, a config error included.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()


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


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` (None: left alone) for the block, then restored.
    Training under a fixed count makes a seed's weights the same bytes in every process: float
    sums split over another number of threads round differently."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
    # The dashboard also serves the state API that Ray Train's controller and its placement-group
    # cleaner poll. Without an address they look for "the" local cluster and fail ("Found multiple
    # active Ray instances") when another xdray command or Ray runs on the machine: name ours.
    # Only the workers get it: in this process it would also redirect any `ray job submit` that
    # the driver's own subprocesses run against another cluster.
    os.environ.update(env)  # Ray Train's controller reads some of these in this process
    port = free_port()
    workers_env = {**env, "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{port}"}
    # address="local": a cluster of our own, never one that `ray start` left running on this
    # machine (Ray's default joins it silently, and a trial then dies when its owner stops it).
    ray.init(address="local", num_cpus=cfg.num_cpus or None, include_dashboard=True, dashboard_host="127.0.0.1",
             dashboard_port=port, logging_level=logging.WARNING, runtime_env={"env_vars": workers_env})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def largest_node_cpus(required: dict[str, float] | None = None) -> float:
    """CPUs of the largest live node holding the `required` resources (e.g. {"GPU": 1}): one
    process cannot use more than one node's cores, however many the cluster has."""
    import ray

    required = required or {}
    sizes = [node["Resources"].get("CPU", 0.0) for node in ray.nodes()
             if node.get("Alive") and all(node["Resources"].get(k, 0.0) >= v for k, v in required.items())]
    return max(sizes, default=1.0) or 1.0
