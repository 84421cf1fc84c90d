"""The stage contract and the one runner that every stage goes through.

A stage declares where its output lives in the run directory, how to tell that a finished output
is current (its fingerprint: the stage's `load` returns None for a stale or missing one), and a
body that writes the output into a staging place. The runner does what every stage needs and no
stage body does itself:

1. pull the output from remote storage (where the run has one) and skip the stage when it is
   current (storage is the truth: a stale local copy is refreshed once); pull the upstream
   outputs it declares as inputs;
2. make the staging place (`<output>.partial`; kept across attempts for resumable stages, whose
   progress is also pulled from storage, so a retry on another node continues);
3. run the body, which may call `work.save()` to push its progress (a trial's checkpoints);
4. publish atomically (the old output is replaced only by a complete new one), push, and print
   one status line;
5. turn a write the machine refuses (read-only, full disk) into a one-line error naming the path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

from xdray.core import store
from xdray.core.errors import XdrayError
from xdray.core.files import publish, remove, unwritable_message

log = logging.getLogger(__name__)

T = TypeVar("T")
PARTIAL = ".partial"


@dataclass(frozen=True)
class Work:
    """What a stage body gets: where to write, scratch space, and a way to save progress."""

    staging: Path  # the output being built: a directory, or a file path for file outputs
    scratch: Path  # a directory for working files, removed after publishing
    run_dir: Path

    def save(self) -> None:
        """Push the staging place as it is now (resumable stages' checkpoints) to storage."""
        store.push(self.run_dir, str(self.staging.relative_to(self.run_dir)))


@dataclass(frozen=True)
class Stage(Generic[T]):
    """One pipeline stage, as the runner sees it."""

    name: str  # for status lines and errors: "teacher", "transfer", "trial E64-H64-..."
    output: str  # relative to the run directory; a name with a suffix (latency.json) is a file
    load: Callable[[Path], T | None]  # the finished output if current for the fingerprint, else None
    build: Callable[[Work], None]  # write the output into work.staging
    resumable: bool = False  # keep (and pull) the staging place of an interrupted build
    summary: Callable[[T], str] | None = None  # the status line's text; None = log only
    inputs: tuple[str, ...] = ()  # upstream outputs (relative paths) the body reads: pulled first
    cached: bool = True  # False: rebuilt on every run (a report of whatever is there now)

    @property
    def is_file(self) -> bool:
        return bool(Path(self.output).suffix)


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T
    path: Path
    skipped: bool


def current(run_dir: Path, stage: Stage[T]) -> T | None:
    """The stage's output if it is current, here or on storage."""
    final = run_dir / stage.output
    store.pull(run_dir, stage.output)
    value = stage.load(final)
    if value is None and store.pull(run_dir, stage.output, refresh=True):  # the local copy was stale
        value = stage.load(final)
    return value


def run_stage(run_dir: Path, stage: Stage[T]) -> Done[T]:
    """Skip the stage when its output is current; otherwise build, publish and push it."""
    final = run_dir / stage.output
    value = current(run_dir, stage) if stage.cached else None
    if value is not None:
        _status(stage, final, value, skipped=True)
        return Done(value, final, skipped=True)
    staging = final.with_name(final.name + PARTIAL)
    scratch = final.with_name(f".{final.name}.scratch")
    try:
        _prepare(run_dir, stage, staging, scratch)
        stage.build(Work(staging, scratch, run_dir))
        publish(staging, final)
    except BaseException as err:
        if not stage.resumable:
            _discard(staging)  # a failed build leaves nothing half-written behind
        message = unwritable_message(err)
        if message:
            raise XdrayError(f"{stage.name}: {message}") from None
        raise
    finally:
        remove(scratch)
    store.push(run_dir, stage.output)
    value = stage.load(final)
    if value is None:
        raise RuntimeError(f"{stage.name}: the stage finished but {final} does not read back as current")
    _status(stage, final, value, skipped=False)
    return Done(value, final, skipped=False)


def _prepare(run_dir: Path, stage: Stage, staging: Path, scratch: Path) -> None:
    store.pull_many(run_dir, stage.inputs, refresh=True)
    remove(scratch)
    if stage.resumable:
        store.pull(run_dir, str(staging.relative_to(run_dir)), refresh=True)
    else:
        remove(staging)
    scratch.mkdir(parents=True)
    if stage.is_file:
        staging.parent.mkdir(parents=True, exist_ok=True)
    else:
        staging.mkdir(parents=True, exist_ok=True)


def _discard(path: Path) -> None:
    try:
        remove(path)
    except OSError:
        log.warning("could not remove %s", path)


def _status(stage: Stage[T], path: Path, value: T, skipped: bool) -> None:
    if stage.summary is None:
        log.info("%s: %s %s", stage.name, "current, skipped:" if skipped else "written to", path)
        return
    print(f"{stage.name} {'(cached) ' if skipped else ''}{path}: {stage.summary(value)}", flush=True)
