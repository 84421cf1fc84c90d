"""Writing files so that readers never see half of one: temporary name, then an atomic rename."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# Errors of the machine, not of xdray: a read-only or full disk, a file where a directory should be.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST}


def unwritable_message(err: BaseException) -> str | None:
    """The one-line message for a write the machine refused (None for any other error)."""
    if not isinstance(err, OSError) or err.errno not in UNWRITABLE or not err.filename:
        return None
    return (f"cannot write {err.filename}: {err.strerror}; check that the run directory is writable and its "
            "disk has space, then rerun: finished stages are kept")


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


def publish(staging: Path, final: Path) -> None:
    """Replace `final` (a file or a directory) with the finished `staging` one. The old directory
    is removed only after the new one is in place, so a crash never leaves neither."""
    if staging.is_file():
        os.replace(staging, final)
        return
    old = final.with_name(final.name + ".old")
    remove(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    remove(old)


def hash_file(path: Path, digest: Any = None, block: int = 1 << 20) -> Any:
    """Feed a file's bytes to `digest` (a hashlib object; a new sha256 when None), streamed in blocks
    so a large file is never held whole, and return that digest object."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(block), b""):
            digest.update(chunk)
    return digest


def resolve_path(base_dir: str | Path, path: str) -> Path:
    """A path from the config: absolute as given, relative to `base_dir` (the experiment file's
    folder) otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (Path(base_dir) / p).resolve()


def remove(path: Path) -> None:
    """Delete a file or a directory tree, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
