"""The task's metric, shared by every stage: entity-level F1 with seqeval, per language, on first
sub-tokens only; and parameter counts."""

from __future__ import annotations

from typing import Sequence

import numpy as np

IGNORE_INDEX = -100  # label of positions that count neither in a loss nor in evaluation
DEV_F1 = "dev_f1_mean"  # what the teacher and trials report, Tune's scheduler and the report read


def word_tags(labels: np.ndarray, predictions: np.ndarray, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Gold and predicted tag strings at the positions that carry a label (first sub-tokens)."""
    keep = labels != IGNORE_INDEX
    return [names[i] for i in labels[keep]], [names[i] for i in predictions[keep]]


def f1_report(gold: Sequence[np.ndarray], predicted: Sequence[np.ndarray], langs: Sequence[str],
              names: Sequence[str]) -> dict:
    """{"f1_mean", "f1_std", "f1_micro", "per_language": {lang: f1}, "sentences"}.

    f1_mean and f1_std (population std) are over languages, as the paper reports them;
    f1_micro pools every entity of every language.
    """
    from seqeval.metrics import f1_score  # here, not at the top: it imports scikit-learn (2 s a CLI start)

    by_lang: dict[str, tuple[list, list]] = {}
    for g, p, lang in zip(gold, predicted, langs):
        gold_tags, pred_tags = word_tags(np.asarray(g), np.asarray(p), names)
        bucket = by_lang.setdefault(lang, ([], []))
        bucket[0].append(gold_tags)
        bucket[1].append(pred_tags)
    per_language = {lang: float(f1_score(g, p, zero_division=0)) for lang, (g, p) in sorted(by_lang.items())}
    all_gold = [s for g, _ in by_lang.values() for s in g]
    all_pred = [s for _, p in by_lang.values() for s in p]
    scores = np.array(list(per_language.values()), dtype=np.float64)
    return {
        "f1_mean": float(scores.mean()) if len(scores) else 0.0,
        "f1_std": float(scores.std()) if len(scores) else 0.0,
        "f1_micro": float(f1_score(all_gold, all_pred, zero_division=0)) if all_gold else 0.0,
        "per_language": per_language,
        "sentences": len(langs),
    }


def count_parameters(module) -> int:
    """Exact number of parameters of a torch module (shared tensors counted once)."""
    seen, total = set(), 0
    for p in module.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
