"""The stage plan: sub-stages with gradual unfreezing, and early stopping. SGDR learning rates, early stopping."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

from xdray.distill.schema import StageConfig
from xdray.distill.student import UNFREEZE_ORDER


@dataclass(frozen=True)
class SubStage:
    stage: StageConfig
    step: int  # 1-based within its stage
    trainable: tuple[str, ...]  # parameter groups that get gradients

    @property
    def name(self) -> str:
        return f"{self.stage.name}/{self.step}"


def expand(stages: Sequence[StageConfig]) -> list[SubStage]:
    """Stages -> sub-stages. Gradual unfreezing freezes everything, then unfreezes one group more
    per sub-stage, top down (output, + projection, + lstm, + embedding)."""
    plan = []
    for stage in stages:
        if stage.unfreeze == "gradual":
            plan += [SubStage(stage, k, UNFREEZE_ORDER[:k]) for k in range(1, len(UNFREEZE_ORDER) + 1)]
        else:
            plan.append(SubStage(stage, 1, UNFREEZE_ORDER))
    return plan


def sgdr(optimizer: torch.optim.Optimizer, stage: StageConfig, steps_per_epoch: int) -> CosineAnnealingWarmRestarts:
    """SGDR, stepped once per batch: cosine from lr_high to lr_low over a cycle of `period` epochs,
    the cycle `period_mult` times longer after each restart (torch's CosineAnnealingWarmRestarts;
    the optimizer's lr must start at lr_high)."""
    return CosineAnnealingWarmRestarts(optimizer, T_0=stage.period * steps_per_epoch, T_mult=stage.period_mult,
                                       eta_min=stage.lr_low)


class EarlyStopping:
    """Keeps the weights with the lowest held-out loss; stops after `patience` epochs without one."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_loss = math.inf
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def update(self, loss: float, model: torch.nn.Module, epoch: int) -> bool:
        """Record one epoch's held-out loss; True when training should stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad_epochs = loss, epoch, 0
            self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.bad_epochs += 1
        return self.bad_epochs > self.patience

    def restore(self, model: torch.nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
