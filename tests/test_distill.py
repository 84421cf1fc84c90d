import math

import pytest
import torch

from xdray.config import load_experiment
from xdray.distill.schema import StageConfig
from xdray.core.metrics import IGNORE_INDEX
from xdray.distill.losses import ce_loss, logit_loss, masked_mse, rep_loss
from xdray.distill.schedule import EarlyStopping, expand, sgdr
from xdray.distill.student import UNFREEZE_ORDER


def test_masked_mse_by_hand():
    prediction = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    target = torch.tensor([[[0.0, 0.0], [3.0, 6.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    # position 0: (1 + 4) / 2 = 2.5; position 1: (0 + 4) / 2 = 2; padding ignored
    assert masked_mse(prediction, target, mask).item() == pytest.approx(2.25)


def test_rep_loss_in_pca_space():
    projection = torch.tensor([[[2.0, 0.0, 1.0]]])
    mean = torch.tensor([1.0, 0.0, 0.0])
    components = torch.tensor([[1.0, 0.0, 0.0]])  # r = 1
    hidden = torch.tensor([[[3.0]]])
    # (projection - mean) @ components.T = 1; (1 - 3)^2 = 4
    assert rep_loss(projection, hidden, torch.tensor([[True]]), (mean, components), linear=True).item() == \
        pytest.approx(4.0)
    # the paper's GELU first: (gelu(2) - 1 - 3)^2
    gelu_2 = 2.0 * 0.5 * (1.0 + math.erf(2.0 / math.sqrt(2.0)))
    assert rep_loss(projection, hidden, torch.tensor([[True]]), (mean, components)).item() == \
        pytest.approx((gelu_2 - 4.0) ** 2, rel=1e-5)


def test_rep_loss_linear_reaches_negative_teacher_states():
    """A GELU never goes below about -0.17: the paper's RepLoss cannot match a teacher state of -1
    whatever the projection, the linear variant matches it exactly."""
    hidden = torch.full((1, 1, 4), -1.0)
    mask = torch.tensor([[True]])
    best_gelu = min(rep_loss(torch.full((1, 1, 4), x), hidden, mask).item() for x in torch.linspace(-5, 5, 201))
    assert best_gelu > 0.8 ** 2  # (-0.17 - (-1))^2 = 0.69
    assert rep_loss(hidden.clone(), hidden, mask, linear=True).item() == 0.0


def test_logit_loss_mse_and_kl():
    student = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])
    teacher = torch.tensor([[[math.log(3.0), 0.0], [5.0, 5.0]]])
    mask = torch.tensor([[True, False]])
    assert logit_loss(student, teacher, mask).item() == pytest.approx(math.log(3.0) ** 2 / 2)
    # KL(q || p) with q = (3/4, 1/4), p = (1/2, 1/2), at T = 1
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert logit_loss(student, teacher, mask, temperature=1.0).item() == pytest.approx(kl, rel=1e-5)
    assert logit_loss(student, student, mask, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_ce_only_on_first_sub_tokens():
    logits = torch.tensor([[[0.0, 10.0], [10.0, 0.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, IGNORE_INDEX, IGNORE_INDEX]])
    expected = -torch.log_softmax(torch.tensor([0.0, 10.0]), 0)[1]
    assert ce_loss(logits, labels).item() == pytest.approx(expected.item())


def test_paper_plan_expands_to_nine_sub_stages_in_unfreezing_order(write_experiment):
    cfg = load_experiment(write_experiment({"name": "x"}))
    plan = expand(cfg.distill.stages)
    assert [s.name for s in plan] == ["representation/1"] + [f"logits/{k}" for k in range(1, 5)] + \
        [f"labels/{k}" for k in range(1, 5)]
    assert plan[0].trainable == UNFREEZE_ORDER
    assert [s.trainable for s in plan[1:5]] == [UNFREEZE_ORDER[:k] for k in range(1, 5)]
    assert plan[1].trainable == ("output",) and plan[4].trainable == ("output", "projection", "lstm", "embedding")


def test_sgdr_values():
    """Stepped once per batch, 10 batches an epoch: restarts after 1, then 1 + 2, epochs."""
    stage = StageConfig(name="s", loss="ce", lr_high=1e-3, lr_low=1e-8, period=1, period_mult=2)
    optimizer = torch.optim.Adam(torch.nn.Linear(1, 1).parameters(), lr=stage.lr_high)
    schedule = sgdr(optimizer, stage, steps_per_epoch=10)
    lrs = []
    for _ in range(70):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[5] == pytest.approx((1e-3 + 1e-8) / 2)
    assert lrs[10] == pytest.approx(1e-3)  # restart after 1 epoch
    assert lrs[20] == pytest.approx((1e-3 + 1e-8) / 2)  # the second cycle lasts 2 epochs
    assert lrs[30] == pytest.approx(1e-3)  # the third starts after 1 + 2 epochs
    assert min(lrs) >= 1e-8 and lrs[9] < lrs[8] < lrs[0]


def test_early_stopping_restores_the_best_weights():
    model = torch.nn.Linear(1, 1)
    stopper = EarlyStopping(patience=1)
    losses = [3.0, 1.0, 2.0, 2.5]
    stopped_at = None
    for epoch, loss in enumerate(losses):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        if stopper.update(loss, model, epoch):
            stopped_at = epoch
            break
    assert stopped_at == 3 and stopper.best_epoch == 1
    stopper.restore(model)
    assert model.weight.item() == 1.0
