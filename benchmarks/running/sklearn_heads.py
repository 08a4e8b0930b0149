"""Framework-free probes on frozen features: L2 logistic regression (C on val) and cosine k-NN.

- ``logreg``: the protocol of Kornblith, Shlens & Le (2019, "Do better ImageNet models transfer better?"):
  features standardized on the train split, multinomial L2-regularized logistic regression (L-BFGS), the
  inverse regularization strength C chosen on the validation split from a log-spaced grid.
- ``knn``: the MedMNIST+ protocol (Doerrich et al. 2024): k = 11 nearest train neighbours by cosine distance,
  probabilities = the neighbours' class frequencies.

Both take pooled ``(N, D)`` float features and integer labels and return class probabilities for the test
split, with the chosen hyper-parameters described in one line.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .selection import is_better, val_score

#: the C grid of the logistic-regression probe (1e-4 ... 1e4, one value per decade)
LOGREG_C_GRID = tuple(10.0**e for e in range(-4, 5))
#: neighbours of the k-NN probe
KNN_K = 11


@dataclass(frozen=True)
class ProbeResult:
    """Test probabilities, validation accuracy of the chosen setting and a description of it."""

    test_probs: np.ndarray | None  # None when no test features were given (a tuning trial)
    val_accuracy: float
    description: str
    curve: list[dict[str, float]]
    predict: object = None  # features (N, D) -> probabilities (N, num_classes), for the inference timing loop
    #: validation probabilities of the chosen setting (the operating point is chosen on them, never on test)
    val_probs: np.ndarray | None = None
    #: parameters the fit learned (logistic regression: coefficients + intercepts; k-NN: none)
    trainable_params: int = 0
    #: the validation metric of the chosen setting and its value (``--select-by``)
    select_by: str = "accuracy"
    val_score: float | None = None


def single_blas_thread():
    """A context in which NumPy/SciPy's BLAS runs on one thread.

    The probe's predict runs between framework calls in the inference loop: BLAS worker threads left spinning
    after a tiny matmul then compete with the framework's OpenMP threads for the same cores, which made a
    32-image k-NN inference batch 100x slower on 2 cores. The head's work is microseconds; one thread suffices.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def _full_probs(model_classes: np.ndarray, probs: np.ndarray, num_classes: int) -> np.ndarray:
    """Probabilities over all ``num_classes`` columns (a class absent from train gets 0)."""
    out = np.zeros((len(probs), num_classes), dtype=np.float32)
    out[:, model_classes.astype(int)] = probs
    return out


def logreg_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: np.ndarray | None,
    num_classes: int,
    seed: int = 0,
    select_by: str = "accuracy",
    c: float | None = None,
) -> ProbeResult:
    """L2 logistic regression on standardized features, C chosen on val by ``select_by`` (``selection.val_score``;
    ties: the stronger regularization), or the given ``c`` (a tuned one); ``test`` ``None``: no test probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train[0])
    x_train, x_val = scaler.transform(train[0]), scaler.transform(val[0])
    best: tuple[float, float, float, object] | None = None
    curve = []
    grid = LOGREG_C_GRID if c is None else (c,)
    for value in grid:
        model = LogisticRegression(C=value, max_iter=2000, random_state=seed)
        # one BLAS thread: each L-BFGS step is a tiny matmul; BLAS threads spinning between steps made a 96-d fit
        # on 1,000 images take minutes on a loaded 2-core machine (and the framework's threads idle meanwhile)
        with warnings.catch_warnings(), single_blas_thread():
            warnings.simplefilter("ignore")  # ConvergenceWarning at large C is expected; the val score decides
            model.fit(x_train, train[1])
        val_probs = _full_probs(model.classes_, model.predict_proba(x_val), num_classes)
        val_acc = _accuracy(val_probs, val[1])
        score = val_acc if select_by == "accuracy" else val_score(select_by, val[1], val_probs)
        curve.append(
            {"C": value, "val_accuracy": val_acc, **({f"val_{select_by}": score} if select_by != "accuracy" else {})}
        )
        if is_better(score, None if best is None else best[0], select_by != "loss"):
            best = (score, val_acc, value, model)
    assert best is not None
    fixed = c is not None
    score, val_acc, c, model = best
    probs = None
    if test is not None:
        probs = _full_probs(model.classes_, model.predict_proba(scaler.transform(test)), num_classes)  # type: ignore[attr-defined]
    val_probs = _full_probs(model.classes_, model.predict_proba(x_val), num_classes)  # type: ignore[attr-defined]

    def predict(features: np.ndarray) -> np.ndarray:
        with single_blas_thread():
            return _full_probs(model.classes_, model.predict_proba(scaler.transform(features)), num_classes)  # type: ignore[attr-defined]

    by = "" if select_by == "accuracy" else f" {select_by}"
    chosen = f"chosen on val{by} from {len(LOGREG_C_GRID)} values (1e-4..1e4)" if not fixed else "tuned"
    return ProbeResult(
        probs,
        val_acc,
        f"logreg probe: C={c:g} {chosen}",
        curve,
        predict,
        val_probs=val_probs,
        trainable_params=int(model.coef_.size + model.intercept_.size),  # type: ignore[attr-defined]
        select_by=select_by,
        val_score=score,
    )


def knn_probe(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: np.ndarray | None,
    num_classes: int,
    k: int = KNN_K,
    select_by: str = "accuracy",
) -> ProbeResult:
    """Cosine k-NN: probabilities are the class frequencies among the ``k`` nearest train features (``test`` ``None``:
    no test probabilities); scored on val by ``select_by``."""
    from sklearn.neighbors import KNeighborsClassifier

    k = min(k, len(train[1]))
    model = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute").fit(train[0], train[1])
    val_probs = _full_probs(model.classes_, model.predict_proba(val[0]), num_classes)
    probs = None if test is None else _full_probs(model.classes_, model.predict_proba(test), num_classes)
    val_acc = _accuracy(val_probs, val[1])
    score = val_acc if select_by == "accuracy" else val_score(select_by, val[1], val_probs)

    def predict(features: np.ndarray) -> np.ndarray:
        with single_blas_thread():
            return _full_probs(model.classes_, model.predict_proba(features), num_classes)

    return ProbeResult(
        probs,
        val_acc,
        f"knn probe: k={k}, cosine",
        [{"k": k, "val_accuracy": val_acc}],
        predict,
        val_probs=val_probs,
        select_by=select_by,
        val_score=score,
    )


def run_probe(
    kind: str,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: np.ndarray | None,
    num_classes: int,
    seed: int,
    select_by: str = "accuracy",
    c: float | None = None,
    k: int | None = None,
) -> ProbeResult:
    """Dispatch on the strategy's ``probe_head`` (``logreg``: C chosen on val by ``select_by`` unless ``c`` is given;
    ``knn``: ``k`` neighbours, default ``KNN_K``); ``test`` ``None`` (a tuning trial): no test probabilities.

    Raises:
        ValueError: another kind.
    """
    if kind == "logreg":
        return logreg_probe(train, val, test, num_classes, seed, select_by, c)
    if kind == "knn":
        return knn_probe(train, val, test, num_classes, KNN_K if k is None else k, select_by)
    raise ValueError(f"unknown probe head {kind!r}; expected logreg or knn")
