"""The training loop of one sub-stage, in plain torch: batches of the transfer set (RepLoss,
LogitLoss) or of the labelled data (CE), Adam under an SGDR schedule stepped every batch, early
stopping on a held-out loss (the held-out transfer slice, or the dev set for CE) with the best
weights restored. Nothing here knows of run directories, checkpoints or Ray."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler

from xdray.core.batching import bucketed_batches, pad_batch, sorted_batches
from xdray.core.metrics import IGNORE_INDEX
from xdray.core.runtime import LogThrottle
from xdray.distill.losses import ce_loss, logit_loss, rep_loss
from xdray.distill.schedule import EarlyStopping, SubStage, sgdr
from xdray.distill.student import BiLSTMStudent

if TYPE_CHECKING:
    from xdray.distill.trial import TrialData

log = logging.getLogger(__name__)

TRANSFER_LOSSES = ("rep", "logit")


@dataclass(frozen=True)
class LoopSettings:
    """What the loop reads besides the sub-stage: the seed, the held-out share of the transfer
    set, and what RepLoss compares (student.rep_projection)."""

    seed: int
    heldout_fraction: float
    linear_projection: bool = False


@dataclass
class Batch:
    ids: torch.Tensor  # (B, T) student ids
    lengths: torch.Tensor  # (B,)
    mask: torch.Tensor  # (B, T) bool
    tokens: int
    hidden: torch.Tensor | None = None  # (B, T, D or r)
    logits: torch.Tensor | None = None  # (B, T, C)
    labels: torch.Tensor | None = None  # (B, T), IGNORE_INDEX off first sub-tokens

    def to(self, device: torch.device) -> "Batch":
        """Tensors to `device`; lengths stay on the CPU, where pack_padded_sequence wants them."""
        if device.type == "cpu":
            return self
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return Batch(move(self.ids), self.lengths, move(self.mask), self.tokens, move(self.hidden),
                     move(self.logits), move(self.labels))


def device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


# ----------------------------------------------------------------------------- batches


def _labelled_batches(td: TrialData, split: str, batch_size: int, seed: int | None) -> Iterator[Batch]:
    enc = td.encoded[split]
    lengths = [len(x) for x in enc.input_ids]
    # evaluation: a fixed order, by length; training: shuffled length buckets
    batches = sorted_batches(lengths, batch_size) if seed is None else bucketed_batches(lengths, batch_size, seed)
    for idx in batches:
        ids = pad_batch([enc.input_ids[i] for i in idx], td.pad_id)
        mask = ids != td.pad_id
        yield Batch(td.vocab.map(ids), mask.sum(1), mask, int(mask.sum()),
                    labels=pad_batch([enc.labels[i] for i in idx], IGNORE_INDEX))


def _transfer_batches(td: TrialData, loop: LoopSettings, split: str, batch_size: int, epoch: int) -> Iterator[Batch]:
    for b in td.transfer.batches(batch_size, split=split, heldout_fraction=loop.heldout_fraction,
                                 epoch=epoch, seed=loop.seed, pad_id=td.pad_id):
        yield Batch(td.vocab.map(b.input_ids), b.mask.sum(1), b.mask, b.tokens, hidden=b.hidden, logits=b.logits)


def batches(td: TrialData, loop: LoopSettings, sub: SubStage, split: str, epoch: int) -> Iterator[Batch]:
    """split: "train" or "heldout" (the transfer slice for stages 1-2, dev for CE)."""
    size = sub.stage.batch_size
    if sub.stage.loss in TRANSFER_LOSSES:
        return _transfer_batches(td, loop, split, size, epoch)
    if split == "train":
        return _labelled_batches(td, "train", size, loop.seed * 1000 + epoch)
    return _labelled_batches(td, "dev", size, None)


def steps_per_epoch(td: TrialData, loop: LoopSettings, sub: SubStage) -> int:
    """Batches in one training epoch (for the transfer set, the expected count of a stream)."""
    rows = (td.transfer.rows * (1 - loop.heldout_fraction) if sub.stage.loss in TRANSFER_LOSSES
            else len(td.encoded["train"]))
    return max(1, int(np.ceil(rows / sub.stage.batch_size)))


def loss_of(student: BiLSTMStudent, batch: Batch, sub: SubStage, pca, linear_projection: bool = False) -> torch.Tensor:
    batch = batch.to(device_of(student))
    projection, logits = student(batch.ids, batch.lengths)
    if sub.stage.loss == "rep":
        return rep_loss(projection, batch.hidden, batch.mask, pca, linear_projection)
    if sub.stage.loss == "logit":
        return logit_loss(logits, batch.logits, batch.mask, sub.stage.temperature or None)
    return ce_loss(logits, batch.labels)


@torch.inference_mode()
def heldout_loss(student: BiLSTMStudent, td: TrialData, loop: LoopSettings, sub: SubStage, pca) -> float:
    student.eval()
    total, weight = 0.0, 0
    for batch in batches(td, loop, sub, "heldout", 0):
        total += loss_of(student, batch, sub, pca, loop.linear_projection).item() * batch.tokens
        weight += batch.tokens
    return total / max(weight, 1)


# ----------------------------------------------------------------------------- one sub-stage


def train_epoch(student: BiLSTMStudent, optimizer: torch.optim.Optimizer, stream: Iterator[Batch],
                loss_fn: Callable[[Batch], torch.Tensor], schedule: LRScheduler | None = None,
                name: str = "") -> tuple[float, float]:
    """One pass over `stream`, the schedule stepped after every batch; returns (token-weighted mean
    loss, the learning rate of the last step). Logs a progress line a minute, for nohup logs."""
    student.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total, weight, lr = 0.0, 0, optimizer.param_groups[0]["lr"]
    throttle = LogThrottle()
    for step, batch in enumerate(stream, 1):
        if throttle.due():
            log.info("%s: step %d, loss %.4f", name, step, total / max(weight, 1))
        lr = optimizer.param_groups[0]["lr"]
        loss = loss_fn(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        total, weight = total + loss.item() * batch.tokens, weight + batch.tokens
    return total / max(weight, 1), lr


def _pca(student: BiLSTMStudent, td: TrialData, sub: SubStage):
    if sub.stage.loss != "rep" or td.transfer.pca is None:
        return None
    device = device_of(student)
    return (torch.tensor(td.transfer.pca["mean"], device=device),
            torch.tensor(td.transfer.pca["components"], device=device))


def train_substage(student: BiLSTMStudent, td: TrialData, loop: LoopSettings, sub: SubStage, index: int,
                   trial: str = "") -> dict:
    """Adam + SGDR over the trainable groups, early stopping on the held-out loss, best weights
    restored. Returns the sub-stage's metrics."""
    torch.manual_seed(loop.seed * 100 + index)  # each sub-stage seeds itself: resume == uninterrupted
    student.set_trainable(sub.trainable)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=sub.stage.lr_high)
    pca = _pca(student, td, sub)
    stopper = EarlyStopping(sub.stage.patience)
    schedule = sgdr(optimizer, sub.stage, steps_per_epoch(td, loop, sub))
    train_loss, lr, epochs, curve = 0.0, sub.stage.lr_high, 0, []
    for epoch in range(sub.stage.max_epochs):
        train_loss, lr = train_epoch(student, optimizer, batches(td, loop, sub, "train", epoch),
                                     lambda b: loss_of(student, b, sub, pca, loop.linear_projection), schedule,
                                     f"trial {trial} {sub.name} epoch {epoch + 1}")
        held = heldout_loss(student, td, loop, sub, pca)
        epochs = epoch + 1
        curve.append({"train_loss": train_loss, "heldout_loss": held, "lr": lr})
        if stopper.update(held, student, epoch):
            break
    stopper.restore(student)
    return {"stage": sub.stage.name, "substage": sub.name, "loss": sub.stage.loss, "epochs": epochs,
            "best_epoch": stopper.best_epoch + 1, "train_loss": train_loss, "heldout_loss": stopper.best_loss,
            "lr": lr, "trainable": list(sub.trainable), "curve": curve}
