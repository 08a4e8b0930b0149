"""Successive halving of ``--tune``'s fine-tuning trials (``--tune-scheduler halving``, the default with ``--tune``).

A strategy that trains its backbone on images (``halved``: scratch, fine-tuning of any depth, LP-FT, L2-SP, ...) runs
every point of its search for a short rung first, and only the best ``1/eta`` go on (Jamieson & Talwalkar 2016, Li
et al. 2018's Hyperband bracket). With ``rungs(8, 15)``: all 8 trials for ``ceil(15/3) = 5`` epochs, the best
``ceil(8/3) = 3`` for the full 15. A survivor is **re-run** from its pretrained start at the next rung's epochs, not
resumed: trial cells keep no weights, and with a learning-rate schedule (cosine, step) a 5-epoch run is not the first
third of a 15-epoch one, so resuming would not be the trial the final rung claims to score. The winner is chosen
among the last rung's trials only (all trained for the full epochs). Probes (frozen trunk: ``linear_probe`` on
cached features, the scikit-learn heads) cost milliseconds per trial once the features are cached and run every
point in full. The budget really spent is the sum of the epochs over images every trial ran (``trial_epochs``: early
stopping ends some sooner; a probe's epochs over cached features cost milliseconds and are not counted), recorded
with the plan's figure (``planned_trial_epochs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...core.cell_kinds import trained_kind
from ...core.strategies import Strategy
from .selection import is_better

#: the schedulers of ``--tune``: every point at full epochs (``grid``), or successive halving (``halving``)
TUNE_SCHEDULERS = ("halving", "grid")
#: successive halving keeps the best ``1/HALVING_ETA`` of a rung's trials, and each rung trains ``HALVING_ETA`` times
#: fewer epochs than the next
HALVING_ETA = 3
#: rungs of the halving: all trials short, then the survivors for the full epochs
HALVING_RUNGS = 2


@dataclass(frozen=True)
class Rung:
    """One rung of a successive halving.

    Attributes:
        trials: how many trials run at this rung.
        epochs: the epochs each of them trains (the last rung's: the suite's ``--epochs``).
    """

    trials: int
    epochs: int


def halved(strategy: Strategy) -> bool:
    """Whether ``strategy``'s trials are halved: it trains a network whose backbone learns on images (a probe's trial
    on cached features is cheap and runs in full)."""
    return trained_kind(strategy) == "network" and strategy.train_backbone != "none"


def rungs(trials: int, epochs: int, eta: int = HALVING_ETA, count: int = HALVING_RUNGS) -> list[Rung]:
    """The rungs of a halving of ``trials`` points whose last rung trains ``epochs``: rung ``i`` of ``count`` keeps
    ``ceil(trials / eta**i)`` trials for ``ceil(epochs / eta**(count - 1 - i))`` epochs.

    Raises:
        ValueError: a non-positive argument, or ``eta`` below 2.
    """
    if trials < 1 or epochs < 1 or count < 1 or eta < 2:
        raise ValueError(
            f"halving: expected trials, epochs, count >= 1 and eta >= 2, got {trials}, {epochs}, {count}, {eta}"
        )
    return [Rung(math.ceil(trials / eta**i), math.ceil(epochs / eta ** (count - 1 - i))) for i in range(count)]


def planned_trial_epochs(plan: Sequence[Rung]) -> int:
    """The trial-epochs a halving plans (each trial running every epoch of its rung)."""
    return sum(rung.trials * rung.epochs for rung in plan)


def survivors(
    scored: Sequence[tuple[dict[str, float], float | None]], keep: int, higher: bool
) -> list[dict[str, float]]:
    """The ``keep`` best configurations of a rung, best first; ties keep grid order, failed trials (``None``) never go
    on.

    Args:
        scored: ``(configuration, validation score)`` per trial, in grid order.
        keep: how many go on.
        higher: a higher score is better (every ``--select-by`` but ``loss``).
    """
    ranked: list[tuple[dict[str, float], float]] = []
    for config, score in scored:
        if score is None:
            continue
        at = len(ranked)
        while at > 0 and is_better(score, ranked[at - 1][1], higher):
            at -= 1
        ranked.insert(at, (config, score))
    return [config for config, _ in ranked[:keep]]


def trial_epochs(record: dict[str, Any]) -> int:
    """The epochs over images a trial's record says it ran (``selection.image_epochs``; 0 for a scikit-learn head, a
    probe on cached features or a failed trial): the budget a tuning spent."""
    selection = record.get("selection") or {}
    value = selection.get("image_epochs")
    return int(value) if isinstance(value, (int, float)) else 0


__all__ = [
    "HALVING_ETA",
    "HALVING_RUNGS",
    "TUNE_SCHEDULERS",
    "Rung",
    "halved",
    "planned_trial_epochs",
    "rungs",
    "survivors",
    "trial_epochs",
]
