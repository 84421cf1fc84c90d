"""Distillation losses: pure functions of tensors and masks."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from xdray.core.metrics import IGNORE_INDEX


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real positions of the per-position mean squared error.

    prediction, target: (B, T, K); mask: (B, T) bool, True on real tokens.
    = sum_{b,t: mask} mean_k (p - y)^2 / sum(mask)
    """
    per_position = (prediction - target).pow(2).mean(-1)  # (B, T)
    return (per_position * mask).sum() / mask.sum().clamp(min=1)


def rep_loss(projection: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor,
             pca: tuple[torch.Tensor, torch.Tensor] | None = None, linear: bool = False) -> torch.Tensor:
    """RepLoss: masked MSE between the student's projection (B, T, D), given before its GELU, and
    the teacher's stored hidden states (B, T, D). The paper compares GELU(projection); `linear`
    compares the projection itself, which can reach the teacher's negative states: a GELU never
    goes below -0.17, while about 38% of fine-tuned MiniLM's last-layer values do. With a PCA basis
    (mean (D,), components (r, D)) the result is mapped into the stored r-dim space (B, T, r) first."""
    if not linear:
        projection = F.gelu(projection)
    if pca is not None:
        mean, components = pca
        projection = (projection - mean) @ components.T  # (B, T, r)
    return masked_mse(projection, hidden, mask)


def logit_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
               temperature: float | None = None) -> torch.Tensor:
    """LogitLoss: masked MSE on raw logits (B, T, C) at every real position (the paper); with a
    temperature, KL(softmax(teacher/T) || softmax(student/T)) * T^2 per position instead."""
    if temperature is None:
        return masked_mse(student, teacher, mask)
    log_p = F.log_softmax(student / temperature, -1)
    log_q = F.log_softmax(teacher / temperature, -1)
    per_position = F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(-1)  # (B, T)
    return (per_position * mask).sum() / mask.sum().clamp(min=1) * temperature ** 2


def ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on gold labels (B, T) at first sub-tokens; IGNORE_INDEX elsewhere."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX)
