"""Classification metrics on the test split, with scikit-learn."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

METRIC_NAMES = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc")


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro-F1, ROC-AUC and PR-AUC from class probabilities.

    ROC-AUC is the binary AUC of the positive class (index 1) for two classes, else the macro one-vs-rest
    AUC; PR-AUC is the average precision of the positive class, else the macro average over one-vs-rest.
    A ranking metric that is undefined (a class absent from ``labels``) is ``nan``, never an exception.

    Args:
        labels: true labels, int ``(N,)``.
        probs: probabilities ``(N, C)``; rows need not be exactly normalized.
    """
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be (N, C) with N={labels.shape[0]}, got shape {probs.shape}")
    num_classes = probs.shape[1]
    preds = probs.argmax(axis=1)
    out = {
        "accuracy": float(skm.accuracy_score(labels, preds)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, preds)),
        "macro_f1": float(skm.f1_score(labels, preds, average="macro", labels=np.arange(num_classes), zero_division=0)),
        "roc_auc": math.nan,
        "pr_auc": math.nan,
    }
    present = np.unique(labels)
    if num_classes == 2:
        if len(present) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(labels, probs[:, 1]))
            out["pr_auc"] = float(skm.average_precision_score(labels, probs[:, 1]))
    elif len(present) == num_classes:
        normalized = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
        out["roc_auc"] = float(skm.roc_auc_score(labels, normalized, multi_class="ovr", average="macro"))
        onehot = label_binarize(labels, classes=np.arange(num_classes))
        out["pr_auc"] = float(skm.average_precision_score(onehot, probs, average="macro"))
    return out
