"""Model selection on validation: the score of an epoch (or a tuning trial) and the best so far, with patience.

The metric is the plan's ``Selection.by`` (``core.plan.SELECT_BY``): accuracy, balanced accuracy, ROC-AUC (binary AUC
of the positive class, else macro one-vs-rest: ``metrics.classification_metrics``) or the mean cross-entropy
(``loss``, the one lower is better). A candidate replaces the best only when strictly better, so ties keep the
earlier epoch (with accuracy, the rule every committed result was selected by); an undefined score (``nan``: a
ranking metric on a split missing a class) is never better than a defined one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...core.plan import Selection


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy of ``probs`` at the true labels."""
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(picked).mean())


def val_score(by: str, labels: np.ndarray, probs: np.ndarray) -> float:
    """The validation score of ``probs`` by metric ``by`` (``nan`` when undefined).

    Raises:
        ValueError: an unknown metric.
    """
    labels = np.asarray(labels)
    if by == "accuracy":
        return float((probs.argmax(1) == labels).mean())
    if by == "loss":
        return log_loss(labels, probs)
    if by in ("balanced_accuracy", "roc_auc"):
        from .metrics import classification_metrics

        return float(classification_metrics(labels, probs)[by])
    raise ValueError(f"unknown selection metric {by!r}")


def is_better(score: float, best: float | None, higher_is_better: bool = True) -> bool:
    """Whether ``score`` strictly beats ``best`` (``None``: nothing yet; a ``nan`` best loses to any number)."""
    if best is None:
        return True
    if math.isnan(score):
        return False
    if math.isnan(best):
        return True
    return score > best if higher_is_better else score < best


@dataclass
class Selector:
    """The best candidate seen so far and how many candidates since it (for early stopping).

    Attributes:
        selection: the plan's selection (metric, candidates, patience).
        best_score: the best score, ``None`` before the first candidate.
        best_epoch: its epoch (1-based over the whole plan).
        best_val_accuracy: the validation accuracy of that epoch.
        stale: candidates considered since the best one.
    """

    selection: Selection
    best_score: float | None = None
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    stale: int = 0

    def consider(self, epoch: int, score: float, val_accuracy: float) -> bool:
        """Take epoch ``epoch`` as a candidate; return whether it is the new best."""
        if is_better(score, self.best_score, self.selection.higher_is_better):
            self.best_score, self.best_epoch, self.best_val_accuracy, self.stale = score, epoch, val_accuracy, 0
            return True
        self.stale += 1
        return False

    def exhausted(self) -> bool:
        """Whether the patience is used up (never without a patience)."""
        patience = self.selection.patience
        return patience is not None and self.stale >= patience

    def summary(self) -> dict[str, float | int | str | None]:
        """``{"epoch", "val_accuracy", "by", "score"}`` of the best candidate (the record's ``probe_best``)."""
        return {
            "epoch": self.best_epoch,
            "val_accuracy": self.best_val_accuracy,
            "by": self.selection.by,
            "score": self.best_score,
        }
