import numpy as np
import pytest
import torch

from xdray.data.schema import WIKIANN_LABELS
from xdray.core.metrics import IGNORE_INDEX
from xdray.core.metrics import count_parameters, f1_report

I = IGNORE_INDEX  # B-PER=1 I-PER=2 B-ORG=3 I-ORG=4 B-LOC=5 I-LOC=6


def test_perfect_and_partial_per_language():
    gold = [np.array([I, 1, 2, 0, 5, I]), np.array([I, 3, I, 0, I])]
    pred = [np.array([0, 1, 2, 0, 5, 0]), np.array([0, 5, 4, 0, 0])]
    report = f1_report(gold, pred, ["en", "de"], WIKIANN_LABELS)
    assert report["per_language"] == {"de": 0.0, "en": 1.0}
    assert report["f1_mean"] == pytest.approx(0.5)
    assert report["f1_std"] == pytest.approx(0.5)
    assert report["f1_micro"] == pytest.approx(2 * (2 / 3 * 2 / 3) / (4 / 3))  # P = R = 2/3


def test_continuation_pieces_are_not_scored():
    gold = [np.array([I, 1, I, I, 0])]
    wrong_on_continuations = [np.array([6, 1, 6, 6, 0])]
    assert f1_report(gold, wrong_on_continuations, ["en"], WIKIANN_LABELS)["f1_mean"] == 1.0


def test_parameter_count_is_exact():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 3))
    assert count_parameters(model) == 10 * 4 + 4 * 3 + 3
