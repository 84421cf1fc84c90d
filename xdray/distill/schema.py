"""Config schema of distillation: the student, the stage plan, the Tune search."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from xdray.core.loader import positive, require
from xdray.core.metrics import DEV_F1


@dataclass(frozen=True)
class StudentConfig:
    embedding_dim: int = 100
    hidden_size: int = 200  # per LSTM direction
    dropout: float = 0.2
    init: Literal["svd", "pca", "random"] = "svd"
    # What RepLoss compares with the teacher's states: GELU(projection) as in the paper, or the
    # linear projection, which can also match the teacher's negative values (the classifier reads
    # the GELU either way).
    rep_projection: Literal["gelu", "linear"] = "gelu"
    # The student's vocabulary: every teacher piece seen in the labelled train split and the
    # transfer set (0), or only the `vocab_size` most frequent (the rest read as unk): with a
    # 250k-piece teacher vocabulary and many languages, the embedding is most of a student's size.
    vocab_size: int = 0

    def __post_init__(self) -> None:
        positive(self, "embedding_dim", "hidden_size")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.vocab_size == 0 or self.vocab_size >= 16, "vocab_size",
                f"must be 0 (every piece seen) or at least 16, got {self.vocab_size}")


@dataclass(frozen=True)
class StageConfig:
    """One stage of the distillation plan; gradual unfreezing splits it into sub-stages."""

    name: str
    loss: Literal["rep", "logit", "ce"]
    unfreeze: Literal["all", "gradual"] = "all"
    max_epochs: int = 10
    patience: int = 2
    batch_size: int = 32
    lr_high: float = 1e-3
    lr_low: float = 1e-8
    period: int = 1  # epochs in the first SGDR cycle
    period_mult: int = 2
    temperature: float = 0.0  # logit loss: 0 = MSE on raw logits (the paper); > 0 = KL at that temperature

    def __post_init__(self) -> None:
        positive(self, "max_epochs", "batch_size", "lr_high", "period", "period_mult")
        require(self.patience >= 0, "patience", "must be >= 0")
        require(self.temperature >= 0, "temperature", "must be >= 0")
        require(0 <= self.lr_low <= self.lr_high, "lr_low", "must be in [0, lr_high]")



PAPER_STAGES = (
    StageConfig(name="representation", loss="rep", unfreeze="all"),
    StageConfig(name="logits", loss="logit", unfreeze="gradual"),
    StageConfig(name="labels", loss="ce", unfreeze="gradual"),
)



@dataclass(frozen=True)
class DistillConfig:
    stages: tuple[StageConfig, ...] = PAPER_STAGES
    heldout_fraction: float = 0.05  # of the transfer set, for early stopping in stages 1-2

    def __post_init__(self) -> None:
        require(len(self.stages) > 0, "stages", "must list at least one stage")
        names = [s.name for s in self.stages]
        require(len(set(names)) == len(names), "stages", f"stage names must be unique, got {names}")
        require(0 < self.heldout_fraction < 0.5, "heldout_fraction", "must be in (0, 0.5)")



@dataclass(frozen=True)
class SearchConfig:
    space: str | None = None  # search-space YAML (relative to the experiment file)
    max_concurrent_trials: int = 0  # 0 = as many as resources allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # Custom Ray resources each trial also holds, e.g. {"accelerator_type:A10G": 0.001} to pin
    # trials to a node type; nodes advertise them with `ray start --resources`.
    resources_per_trial: dict[str, float] = field(default_factory=dict)
    max_failures: int = 2

    def __post_init__(self) -> None:
        require(all(v >= 0 for v in self.resources_per_trial.values()), "resources_per_trial",
                "amounts must be >= 0")
        require(self.max_concurrent_trials >= 0, "max_concurrent_trials", "must be >= 0")
        require(self.cpus_per_trial > 0, "cpus_per_trial", "must be > 0")
        require(self.gpus_per_trial >= 0, "gpus_per_trial", "must be >= 0")
        require(self.max_failures >= 0, "max_failures", "must be >= 0")



@dataclass(frozen=True)
class SchedulerConfig:
    """An early-stopping scheduler over the trials (the space file's `scheduler:` entry)."""

    type: Literal["asha"] = "asha"
    metric: str = DEV_F1  # reported after every sub-stage
    grace_period: int = 3  # sub-stages every trial runs before it may be stopped
    reduction_factor: float = 2.0

    def __post_init__(self) -> None:
        require(self.grace_period >= 1, "grace_period", "must be >= 1")
        require(self.reduction_factor > 1, "reduction_factor", "must be > 1")
