"""Config schema of the frontier: latency, report and serving-cost settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from xdray.core.loader import positive, require


@dataclass(frozen=True)
class EvalConfig:
    batch_sizes: tuple[int, ...] = (1, 32)
    latency_runs: int = 20
    reference_teacher: Literal["none", "mbert-base"] = "none"

    def __post_init__(self) -> None:
        require(len(self.batch_sizes) > 0 and all(b > 0 for b in self.batch_sizes), "batch_sizes",
                "must be a non-empty list of positive integers")
        require(self.latency_runs >= 20, "latency_runs", "must be >= 20 (median of at least 20)")



@dataclass(frozen=True)
class CostConfig:
    """Serving-cost scenario for the report: every query is one sentence, served in batches of the
    largest timed batch size on the device the latencies were measured on."""

    users: int = 1_000_000
    queries_per_user_per_day: float = 10.0
    days: int = 365
    price_per_hour: float = 3.0  # of the timed device (e.g. one GPU), in `currency`
    currency: str = "USD"  # the unit the cost column names

    def __post_init__(self) -> None:
        positive(self, "users", "queries_per_user_per_day", "days")
        require(self.price_per_hour >= 0, "price_per_hour", "must be >= 0")
        require(self.currency.isalpha(), "currency", f"must be a currency code such as USD, got {self.currency!r}")



@dataclass(frozen=True)
class ReportConfig:
    min_retention: float = 0.95  # of the teacher's dev F1, for the recommended student
    recommend_by: Literal["size", "latency"] = "size"  # the smallest, or the fastest at the largest batch
    cost: CostConfig = field(default_factory=CostConfig)

    def __post_init__(self) -> None:
        require(0 < self.min_retention <= 1, "min_retention", "must be in (0, 1]")
