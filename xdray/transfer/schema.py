"""Config schema of the transfer stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from xdray.core.loader import positive, require


@dataclass(frozen=True)
class TransferConfig:
    """Transfer-set build: teacher logits and one layer's hidden states for unlabelled text."""

    layer: int = 6  # hidden-state layer; negative counts from the top (-1 = last)
    hidden: Literal["layer", "none"] = "layer"
    hidden_pca: int = 0  # 0 = store full hidden states; r > 0 stores r-dim PCA projections
    max_sentences: int = 0  # cap on the whole transfer set, 0 = all
    actors: int | Literal["auto"] = "auto"  # auto: one per GPU; on CPU one using all cores
    batch_size: int = 512  # sentences per actor call, and per Parquet shard
    micro_batch: int = 64  # sentences per forward pass, sorted by length within the batch
    fp16: bool = True  # fp16 inference on GPU; storage is always fp16
    # Custom Ray resources each teacher actor also holds (e.g. to keep them on a node type).
    resources_per_actor: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(all(v >= 0 for v in self.resources_per_actor.values()), "resources_per_actor",
                "amounts must be >= 0")
        require(self.hidden_pca >= 0, "hidden_pca", "must be >= 0")
        require(self.max_sentences >= 0, "max_sentences", "must be >= 0")
        require(self.actors == "auto" or self.actors > 0, "actors", "must be 'auto' or > 0")
        positive(self, "batch_size", "micro_batch")
