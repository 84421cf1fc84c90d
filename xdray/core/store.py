"""The run directory's store: remote storage: `runtime.storage_path: s3://bucket/runs` (or gs://, or any
URI pyarrow.fs understands).

Every stage works in a local copy of the run directory (the node's cache, ~/.cache/xdray/runs/
<name> unless --out says otherwise) and meets the other stages only through storage: before it
runs, a stage pulls what storage already holds for it (so finished work is skipped, on any node);
when it finishes, it pushes its output. A trial on a GPU worker pulls the teacher, its transfer
set and its own checkpoint, and pushes the checkpoint after every sub-stage, so a retry on
another node continues where the failed one stopped. The local copy knows its remote through a
marker file; with a local or file:// storage path there is no marker and every call is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from xdray.core.files import remove

log = logging.getLogger(__name__)

MARKER = ".xdray-storage.json"
COMPLETE = "_XDRAY_COMPLETE"  # written last into a pushed directory: object stores cannot rename one
CACHE_ROOT = Path(os.environ.get("XDRAY_CACHE", "~/.cache/xdray")).expanduser()
CACHE = CACHE_ROOT / "runs"  # local copies of runs on remote storage
MODELS = CACHE_ROOT / "models"  # teachers converted from other formats, keyed by their source's digest


def is_remote(storage_path: str | None) -> bool:
    """Storage reached through pyarrow (s3://, gs://, ...). file:// URIs are used in place, unless
    XDRAY_STAGE_FILE_URIS=1 (how the tests run the cloud path offline, on a local "bucket")."""
    if not storage_path or "://" not in storage_path:
        return False
    return not storage_path.startswith("file://") or os.environ.get("XDRAY_STAGE_FILE_URIS") == "1"


def attach(run_dir: Path, uri: str) -> None:
    """Make `run_dir` the local copy of the run directory at `uri`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / MARKER).write_text(json.dumps({"uri": uri.rstrip("/")}))


def remote_of(run_dir: Path) -> str | None:
    marker = Path(run_dir) / MARKER
    return json.loads(marker.read_text())["uri"] if marker.exists() else None


def _filesystem(uri: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def pull(run_dir: Path, relative: str, refresh: bool = False) -> bool:
    """Copy `relative` (a file, or a directory pushed whole) from storage into the local copy,
    unless it is there already (or always, with refresh). Returns whether the local copy has it."""
    import pyarrow.fs

    local = Path(run_dir) / relative
    uri = remote_of(run_dir)
    if uri is None or (local.exists() and not refresh):
        return local.exists()
    fs, base = _filesystem(uri)
    source = f"{base}/{relative}"
    kind = fs.get_file_info(source).type
    if kind == pyarrow.fs.FileType.Directory:
        if fs.get_file_info(f"{source}/{COMPLETE}").type == pyarrow.fs.FileType.NotFound:
            return local.exists()  # half pushed: not there yet
    elif kind != pyarrow.fs.FileType.File:
        return local.exists()
    staging = local.with_name(local.name + ".pulling")
    remove(staging)
    if kind == pyarrow.fs.FileType.Directory:
        staging.mkdir(parents=True)
    else:
        staging.parent.mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(source, str(staging), source_filesystem=fs,
                          destination_filesystem=pyarrow.fs.LocalFileSystem())
    if staging.is_dir():
        (staging / COMPLETE).unlink(missing_ok=True)
    remove(local)
    os.replace(staging, local)
    log.info("storage: pulled %s from %s", relative, uri)
    return True


def push(run_dir: Path, relative: str) -> None:
    """Copy `relative` from the local copy to storage, replacing what was there. A directory gets
    its completion mark last, so a reader never takes a half-written one."""
    import pyarrow.fs

    uri = remote_of(run_dir)
    local = Path(run_dir) / relative
    if uri is None or not local.exists():
        return
    fs, base = _filesystem(uri)
    target = f"{base}/{relative}"
    local_fs = pyarrow.fs.LocalFileSystem()
    if local.is_dir():
        if fs.get_file_info(target).type != pyarrow.fs.FileType.NotFound:
            fs.delete_dir(target)
        fs.create_dir(target, recursive=True)
        pyarrow.fs.copy_files(str(local), target, source_filesystem=local_fs, destination_filesystem=fs)
        with fs.open_output_stream(f"{target}/{COMPLETE}") as mark:
            mark.write(b"ok\n")
    else:
        fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        pyarrow.fs.copy_files(str(local), target, source_filesystem=local_fs, destination_filesystem=fs)
    log.debug("storage: pushed %s to %s", relative, uri)


def pull_many(run_dir: Path, relatives: Iterable[str], refresh: bool = False) -> None:
    """pull() each of `relatives` (what a stage on another node reads before it starts)."""
    for relative in relatives:
        pull(run_dir, relative, refresh=refresh)
