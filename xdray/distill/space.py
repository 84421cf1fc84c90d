"""Search-space files: dotted config keys mapped to one Tune domain each, and an optional
`scheduler:` entry. Parsed without Ray; `xdray.distill.tuning` turns them into `ray.tune` domains."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xdray.core.errors import ConfigError
from xdray.core.loader import build_checked, read_yaml
from xdray.distill.schema import SchedulerConfig

DOMAINS = ("grid_search", "choice", "uniform", "loguniform", "randint")
# check(key, value, where) raises ConfigError when the experiment does not accept `value` for `key`.
ValueCheck = Callable[[str, Any, str], None]


@dataclass(frozen=True)
class SpaceEntry:
    """One searched key: `values` for grid_search / choice, `(low, high)` bounds otherwise."""

    key: str
    domain: str
    values: tuple


@dataclass(frozen=True)
class SearchSpace:
    entries: tuple[SpaceEntry, ...] = ()
    scheduler: SchedulerConfig | None = None
    path: str = "<no search space>"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.entries)


def _space_entry(path: Path, key: str, spec: Any, check: ValueCheck) -> SpaceEntry:
    where = f"{path}: {key}"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DOMAINS:
        raise ConfigError(f"{where}: expected exactly one of {', '.join(DOMAINS)}, got {spec!r}")
    domain, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: {domain} needs a non-empty list, got {values!r}")
    if domain not in ("grid_search", "choice"):
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
                or not values[0] < values[1]:
            raise ConfigError(f"{where}: {domain} needs [low, high] with low < high, got {values!r}")
        if domain == "loguniform" and values[0] <= 0:
            raise ConfigError(f"{where}: loguniform needs low > 0, got {values[0]!r}")
    probe = values if domain in ("grid_search", "choice") else [values[0], values[1] - (domain == "randint")]
    for value in probe:
        check(key, value, str(path))
    return SpaceEntry(key, domain, tuple(values))


def _parse_scheduler(path: Path, spec: Any) -> SchedulerConfig:
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: scheduler: expected a mapping such as {{type: asha, grace_period: 3}}, "
                          f"got {spec!r}")
    return build_checked(SchedulerConfig, spec, str(path), "scheduler")


def load_space(path: str | Path, check: ValueCheck) -> SearchSpace:
    """Parse a search-space file and `check` every value it can produce against the experiment."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a non-empty mapping of config keys to domains, e.g. "
                          "'student.hidden_size: {grid_search: [100, 200]}'")
    scheduler = _parse_scheduler(path, data.pop("scheduler")) if "scheduler" in data else None
    entries = tuple(_space_entry(path, str(key), spec, check) for key, spec in data.items())
    return SearchSpace(entries, scheduler, str(path))


def describe(value: Any) -> Any:
    """A searched value as a short scalar for names, tables and HParams: a stage plan becomes
    e.g. "rep>logit*>ce*" (* = gradual unfreezing)."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) and "loss" in v for v in value):
            return ">".join(v["loss"] + ("*" if v.get("unfreeze") == "gradual" else "") for v in value)
        return ",".join(str(describe(v)) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def short_name(key: str) -> str:
    """student.embedding_dim -> embedding_dim: the column name of a searched key."""
    return key.split(".")[-1]
