"""The runtime section, Ray connection, seeds, logging and progress settings.

Inside a Ray job (RAY_ADDRESS set, or runtime.address) xdray connects to that cluster; elsewhere
it starts a local one with its dashboard (and state API) bound to 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import random
import re
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

    def level(self, force: bool = False) -> int:
        """INFO when a line is due, DEBUG otherwise (shown with -v): the same line, throttled."""
        return logging.INFO if self.due(force) else logging.DEBUG


# What configure_logging sets, passed on to the workers of a local cluster: xdray's level, and the
# libraries' quiet settings (read when each library loads, so set before that).
QUIET_ENV = ("XDRAY_LOG_LEVEL", "TORCH_CPP_LOG_LEVEL", "TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS",
             "RAY_BACKEND_LOG_LEVEL", "RAY_DEDUP_LOGS")
QUIET_LIBRARIES = {
    "TORCH_CPP_LOG_LEVEL": "ERROR",  # torch's C++ warnings: the ONNX exporter's shape-inference notes
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # "Writing model shards" bars for a one-file model
    "RAY_BACKEND_LOG_LEVEL": "fatal",  # Ray's C++ core worker lines (constructor arguments, shutdown)
    "RAY_DEDUP_LOGS": "0",  # the few lines shown are each a trial's own: none is "repeated 5x"
}


def verbose() -> bool:
    """Whether `-v` asked for the detail (here or, through XDRAY_LOG_LEVEL, in the driver)."""
    return logging.getLogger("xdray").isEnabledFor(logging.DEBUG)


def configure_logging(level: int | None = None) -> None:
    """xdray's log lines (timestamped, one per event) on stderr: the driver's and, forwarded by
    Ray, the workers' (a worker's level is the driver's, through XDRAY_LOG_LEVEL). Libraries stay
    at WARNING, transformers at ERROR; without -v, the libraries' own C++ logs, bars and notes are
    off too (QUIET_LIBRARIES)."""
    if level is None:
        level = logging.getLevelName(os.environ.get("XDRAY_LOG_LEVEL", "INFO"))
    os.environ["XDRAY_LOG_LEVEL"] = logging.getLevelName(level)
    if not logging.getLogger().handlers:
        logging.basicConfig(format=LOG_FORMAT, datefmt="%H:%M:%S", level=logging.WARNING)
    logging.getLogger("xdray").setLevel(level)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if level > logging.DEBUG:
        for key, value in QUIET_LIBRARIES.items():
            os.environ.setdefault(key, value)
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
    ray_level = logging.WARNING if verbose() else logging.ERROR  # the driver's own Ray notes
    if address:
        _ray_init(address=address, logging_level=ray_level)
        _forward_worker_lines(not quiet)
        stop_on_sigterm()
        return
    env = {"TOKENIZERS_PARALLELISM": "false", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    env.update({k: os.environ[k] for k in QUIET_ENV if k in os.environ})  # the driver's quiet settings
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
    _ray_init(address="local", num_cpus=cfg.num_cpus or None, include_dashboard=True, dashboard_host="127.0.0.1",
              dashboard_port=port, logging_level=ray_level, runtime_env={"env_vars": workers_env})
    _forward_worker_lines(not quiet)
    stop_on_sigterm()


def _ray_init(**kwargs) -> None:
    """ray.init with its C++ start-up notes (the core worker's "Set ray log level" line) kept off
    the terminal unless -v; where the start fails they are shown after all."""
    import tempfile

    import ray

    if verbose():
        ray.init(**kwargs)
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            ray.init(**kwargs)
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def stop_on_sigterm() -> None:
    """SIGTERM stops the driver as Ctrl-C does (KeyboardInterrupt: one line, exit 130, the run kept
    to resume), where Ray's core worker would dump a C++ stack trace. Main thread only."""
    import signal
    import threading

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)


# A worker's line worth a user's terminal without -v: xdray's own log lines, and (where progress
# bars are on) its bars.
WORKER_LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING|ERROR|CRITICAL) xdray")
BAR = re.compile(r"\d+%\|")


def _forward_worker_lines(bars: bool) -> None:
    """Without -v the driver shows only xdray's lines from the workers (and, whole, a traceback
    through xdray's code; Ray's own background threads' tracebacks stay in the logs):
    Ray Train's controller, its report dumps and the actors' start-up notes stay in the workers'
    log files (/tmp/ray/session_latest/logs), where -v or the dashboard shows them. Ray's own
    forwarder (a private hook) is wrapped; where it is not there, every line is forwarded."""
    for name in ("ray.data", "ray.serve"):  # their start and finish notes, on loggers of their own
        logging.getLogger(name).setLevel(logging.INFO if verbose() else logging.ERROR)
    if verbose():
        return
    try:
        from ray._private import worker as ray_worker

        dispatcher, show = ray_worker.global_worker_stdstream_dispatcher, ray_worker.print_to_stdstream
        ignore_prefix = ray_worker._should_ignore_worker_log_prefix(ray_worker.global_worker)
    except (ImportError, AttributeError):
        return

    def forward(data: dict) -> None:
        lines = data["lines"]
        ours = any("Traceback (most recent call last)" in line for line in lines) and \
            any("/xdray/" in line for line in lines)  # a traceback through xdray's code, whole
        if not ours:
            lines = [line for line in lines if WORKER_LINE.search(line) or (bars and BAR.search(line))]
        if lines:
            show({**data, "lines": lines}, ignore_prefix=ignore_prefix)

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", forward)


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
