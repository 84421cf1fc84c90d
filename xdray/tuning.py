"""Ray Tune edge of xdray. So far: search-space entries (parsed and validated by
`xdray.config.load_space`) to ray.tune domains; the Tuner driver follows (issue 5)."""

from __future__ import annotations

from typing import Any

from xdray.config import SpaceEntry


def tune_param_space(entries: list[SpaceEntry]) -> dict[str, Any]:
    """Search-space entries -> a Tuner param_space of ray.tune domains on dotted keys."""
    from ray import tune

    build = {
        "grid_search": lambda v: tune.grid_search(list(v)),
        "choice": lambda v: tune.choice(list(v)),
        "uniform": lambda v: tune.uniform(*v),
        "loguniform": lambda v: tune.loguniform(*v),
        "randint": lambda v: tune.randint(*v),
    }
    return {entry.key: build[entry.domain](entry.values) for entry in entries}
