"""Frontier report. So far: Pareto selection and the recommended student (the rest: issue 5)."""

from __future__ import annotations

from typing import Mapping, Sequence


def pareto_front(points: Sequence[Mapping[str, float]], maximise: str, minimise: Sequence[str]) -> list[bool]:
    """For each point, whether no other point is at least as good on every objective and strictly
    better on one (higher `maximise`, lower each of `minimise`)."""
    def dominates(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
        no_worse = a[maximise] >= b[maximise] and all(a[k] <= b[k] for k in minimise)
        better = a[maximise] > b[maximise] or any(a[k] < b[k] for k in minimise)
        return no_worse and better

    return [not any(dominates(other, point) for other in points if other is not point) for point in points]


def recommend(points: Sequence[Mapping[str, float]], min_retention: float, by: str = "params") -> int | None:
    """Index of the smallest (or, with by="latency_ms", fastest) point whose retention meets
    `min_retention`; None when none does."""
    eligible = [i for i, p in enumerate(points) if p["retention"] >= min_retention]
    return min(eligible, key=lambda i: (points[i][by], -points[i]["retention"])) if eligible else None
