"""Run records: the small files the stages leave in the run directory for each other, each with
its file name, typed reader and writer here, so no stage reads another's files through that
stage's own constants.

A missing record reads as None (the stage that writes it has not run); a damaged one raises
`CorruptRecord`, naming the file. The two are never the same: a damaged trial metrics.json does not
silently retrain the trial, a damaged study index does not read as "no trials yet". A stage whose
output is a cheap cache (latency) may catch `CorruptRecord` and rebuild, saying so in the log.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from xdray.core.errors import XdrayError
from xdray.core.files import atomic_write_json

METRICS_FILE = "metrics.json"  # the teacher's, a trial's and an export's scores
FINGERPRINT_FILE = "fingerprint.json"  # what the teacher was built from
RECOMMENDED_FILE = "recommended.json"  # the report's choice
FRONTIER_FILE = "frontier.csv"  # the report's rows


class CorruptRecord(XdrayError):
    """A run record exists but cannot be read: damaged, truncated, or not what it should hold."""

    def __init__(self, path: Path, problem: str, remedy: str = ""):
        super().__init__(f"{path}: damaged run record ({problem})" + (f"; {remedy}" if remedy else ""))
        self.path = path


def read_json(path: Path, remedy: str = "") -> Any | None:
    """The JSON at `path`, or None where there is no file; CorruptRecord where it does not parse."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # no file there, or no folder above it
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise CorruptRecord(path, f"cannot be read: {err}", remedy) from None
    try:
        return json.loads(text)
    except ValueError as err:
        raise CorruptRecord(path, f"not JSON: {err}", remedy) from None


def read_object(path: Path, keys: tuple[str, ...] = (), remedy: str = "") -> dict | None:
    """A JSON object holding at least `keys`, or None where there is no file."""
    value = read_json(path, remedy)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CorruptRecord(path, f"expected a JSON object, got {type(value).__name__}", remedy)
    missing = [k for k in keys if k not in value]
    if missing:
        raise CorruptRecord(path, f"no {', '.join(missing)}", remedy)
    return value


write_json = atomic_write_json


# ----------------------------------------------------------------------------- deployable forms


class Form(str, Enum):
    """A deployable form of a trained student. A frontier row names a form of trial KEY as
    KEY + suffix (E64-H32-0b7d31b6+onnx-int8), its HParams column by the value."""

    EAGER = "torch"
    INT8 = "torch-int8"  # torch dynamic int8 (LSTM and Linear)
    ONNX = "onnx"  # student.onnx in ONNX Runtime
    ONNX_INT8 = "onnx-int8"  # student.int8.onnx

    @property
    def suffix(self) -> str:
        return "" if self is Form.EAGER else "+" + ("int8" if self is Form.INT8 else self.value)

    @property
    def runtime(self) -> str:
        return "onnx" if self in (Form.ONNX, Form.ONNX_INT8) else "torch"

    @property
    def int8(self) -> bool:
        return self in (Form.INT8, Form.ONNX_INT8)

    @property
    def words(self) -> str:
        """"torch", "torch int8", "onnx", "onnx int8": how the report and the card name it."""
        return self.runtime + (" int8" if self.int8 else "")

    def row_name(self, key: str) -> str:
        """The frontier's name of trial `key` in this form."""
        return key + self.suffix

    @classmethod
    def of(cls, runtime: str, int8: bool) -> "Form":
        return next(f for f in cls if f.runtime == runtime and f.int8 == bool(int8))

    @classmethod
    def split(cls, name: str) -> tuple[str, "Form"]:
        """"KEY+onnx" -> ("KEY", Form.ONNX); a bare key is the eager form."""
        key, plus, rest = name.partition("+")
        if not plus:
            return key, cls.EAGER
        return key, next(f for f in cls if f.suffix == plus + rest)


# ----------------------------------------------------------------------------- records


def read_metrics(directory: Path, remedy: str = "") -> dict | None:
    """DIR/metrics.json (the teacher's, a trial's, an export's): dev scores at least."""
    return read_object(directory / METRICS_FILE, ("dev",), remedy)


def write_metrics(directory: Path, metrics: dict) -> None:
    write_json(directory / METRICS_FILE, metrics)


def trial_forms(metrics: dict) -> dict[Form, dict]:
    """{form: {"dev", "test"?, "size_bytes"}} of a trial's record: every form it scored."""
    scored = metrics.get("forms", {})
    return {form: metrics if form is Form.EAGER else scored[form.value]
            for form in Form if form is Form.EAGER or form.value in scored}


@dataclass(frozen=True)
class TrialResult:
    """One trial of a study, as its index lists it."""

    key: str
    params: dict
    status: str  # done | stopped | error
    error: str | None = None
    node_id: str | None = None  # the Ray node that finished it


@dataclass(frozen=True)
class StudyIndex:
    """RUN/trials/index.json (a named study's: studies/<name>/index.json): its trials and the
    dotted keys its space searched."""

    trials: list[TrialResult]
    space: list[str]

    @property
    def done(self) -> list[str]:
        return [t.key for t in self.trials if t.status == "done"]


def read_index(path: Path) -> StudyIndex | None:
    raw = read_object(path, ("trials", "space"), "run `xdray tune` again to rewrite it")
    if raw is None:
        return None
    try:
        return StudyIndex([TrialResult(**t) for t in raw["trials"]], list(raw["space"]))
    except TypeError as err:
        raise CorruptRecord(path, f"a trial entry does not fit: {err}", "run `xdray tune` again") from None


def write_index(path: Path, index: StudyIndex) -> None:
    write_json(path, {"space": list(index.space), "trials": [asdict(t) for t in index.trials]})


@dataclass(frozen=True)
class Latency:
    """RUN/eval/latency.json: median ms per model name (teacher, reference, KEY, KEY+int8, ...)
    and batch size, parameter counts, and the settings it was measured under."""

    device: str
    threads: int
    params: dict[str, int]
    latency_ms: dict[str, dict[int, float]]
    settings: dict = field(default_factory=dict)

    def ms(self, name: str, batch: int) -> float | None:
        return self.latency_ms.get(name, {}).get(batch)

    def to_json(self) -> dict:
        return {"device": self.device, "threads": self.threads, "params": self.params, "settings": self.settings,
                "latency_ms": {n: {str(b): ms for b, ms in by.items()} for n, by in self.latency_ms.items()}}


def read_latency(path: Path) -> Latency | None:
    raw = read_object(path, ("device", "threads", "params", "latency_ms"))
    if raw is None:
        return None
    try:
        timings = {n: {int(b): float(ms) for b, ms in by.items()} for n, by in raw["latency_ms"].items()}
    except (AttributeError, TypeError, ValueError) as err:
        raise CorruptRecord(path, f"latency_ms: {err}") from None
    return Latency(raw["device"], raw["threads"], raw["params"], timings, raw.get("settings", {}))


@dataclass(frozen=True)
class Recommendation:
    """RUN/report/recommended.json: the recommended trial (None when none kept enough of the
    teacher), its frontier row, and the name of the form to serve it in."""

    trial_id: str | None
    row: dict | None = None
    serve: str | None = None


def read_recommendation(report_dir: Path) -> Recommendation | None:
    raw = read_object(report_dir / RECOMMENDED_FILE, ("trial_id",), "run `xdray report` again to rewrite it")
    return None if raw is None else Recommendation(raw["trial_id"], raw.get("row"), raw.get("serve"))


def write_recommendation(report_dir: Path, recommendation: Recommendation) -> None:
    write_json(report_dir / RECOMMENDED_FILE, asdict(recommendation))


def read_frontier(report_dir: Path) -> list[dict] | None:
    """frontier.csv's rows as strings (the csv module's), or None where there is none."""
    path = report_dir / FRONTIER_FILE
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CorruptRecord(path, str(err), "run `xdray report` again to rewrite it") from None
    if rows and "trial_id" not in rows[0]:
        raise CorruptRecord(path, "no trial_id column", "run `xdray report` again to rewrite it")
    return rows


def write_frontier(report_dir: Path, rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (report_dir / FRONTIER_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
