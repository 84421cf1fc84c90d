"""The test seam for fault injection: the one place production code can be made to crash.

Tests show that a killed worker is survived (a transfer actor mid-build, a trial between
sub-stages) by writing a marker file into the directory that worker writes to, naming the point
at which it should die. Production code calls `crash_point(directory, point)` at those points; with
no marker there (always, outside tests) it returns at once.
"""

from __future__ import annotations

import os
from pathlib import Path

MARKER = ".xdray-test-crash"


def arm(directory: Path, point: str) -> Path:
    """Make the next worker that reaches `point` in `directory` die (tests only)."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / MARKER
    marker.write_text(point)
    return marker


def crash_point(directory: Path, point: str) -> None:
    """Die abruptly, as a preempted node or an OOM kill would, if `directory` holds a marker for
    `point`. The marker is removed first, so exactly one worker dies, once."""
    marker = Path(directory) / MARKER
    try:
        if marker.read_text().strip() != point:
            return
        marker.unlink()
    except FileNotFoundError:  # none there, or another worker claimed it first
        return
    os._exit(1)
