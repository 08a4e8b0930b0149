"""Tuning on validation (``--tune``): the trial cells of a suite, the configuration that won, and applying it.

Each strategy row carries its search space (``core.strategies.SearchSpace``, exactly ``TRIAL_BUDGET`` points, so every
strategy gets the same budget). With ``--tune`` the suite first runs one trial cell per point, per backend × model ×
dataset, on the first requested seed (``tuning_run.run_tuned_suite``: ordinary cells, resumable, parallel, recorded
in ``<suite>/tuning/results.jsonl``). A trial cell is of the ``tuning_trial`` kind: it trains on train and is scored on
val by ``--select-by``, and its data path has no test split (``cell_tuning.py``). The winner per backend × model ×
strategy × dataset is the best trial by that score (ties: the first point of the grid); the suite's cells then run
with it on every seed, and only they touch test. Their record says what was searched, the budget, what won and its
validation score (``tuning``), and the seconds every trial took together (``tuning_s``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ...core.strategies import TRIAL_BUDGET, Strategy, get_strategy, trial_name, with_config
from .config import CellConfig, RunOptions, SuiteConfig
from .halving import halved, trial_epochs
from .results import latest_by_cell
from .selection import is_better

#: sub-folder of a suite directory holding the trial cells' suite (its own results.jsonl and cells/)
TUNING_DIR = "tuning"


class TuningError(RuntimeError):
    """A tuned cell has no winning configuration (every trial failed, or the trials were not run)."""


def tuning_key(backend: str, model: str, strategy: str, dataset: str) -> str:
    """The identity a winner is chosen for: ``backend|model|strategy|dataset``."""
    return f"{backend}|{model}|{strategy}|{dataset}"


def trial_suite(
    suite: SuiteConfig,
    configs: dict[str, list[dict[str, float]]] | None = None,
    epochs: int | None = None,
    name: str = "tuning",
) -> SuiteConfig:
    """The trial cells of ``suite``: every point of every strategy's search space (or the ``configs`` given per
    strategy name, in that order), on the first seed, no inference pass (trials are never timed at inference nor
    tested); ``epochs`` replaces the suite's (a halving rung's)."""
    strategies = tuple(
        trial_name(row, config)
        for row in (get_strategy(strategy) for strategy in suite.strategies)
        for config in (search_of(row).configs() if configs is None else configs.get(row.name, []))
    )
    options = replace(suite.options, infer_pass=False, tuned={}, tuning_facts={})
    if epochs is not None:
        options = replace(options, epochs=epochs)
    return SuiteConfig(
        name=f"{suite.name}-{name}",
        backends=suite.backends,
        models=suite.models,
        strategies=strategies,
        datasets=suite.datasets,
        seeds=suite.seeds[:1],
        options=options,
    )


def search_of(strategy: Strategy) -> Any:
    """The strategy row's search space.

    Raises:
        TuningError: the row has none (it cannot be tuned).
    """
    if strategy.search is None:
        raise TuningError(f"strategy {strategy.name!r} has no search space; it cannot run with --tune")
    return strategy.search


def trial_score(record: dict[str, Any]) -> float | None:
    """The validation score a trial was selected by (``None`` for a failed trial)."""
    if record.get("status") != "ok":
        return None
    selection = record.get("selection") or {}
    score = selection.get("score")
    return float(score) if isinstance(score, (int, float)) else None


def select_winners(
    records: list[dict[str, Any]],
    suite: SuiteConfig,
    final: dict[str, list[dict[str, float]]] | None = None,
    earlier: dict[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, dict[str, float] | None], dict[str, dict[str, Any]]]:
    """The winning configuration of each backend × model × strategy × dataset of ``suite`` from its trials' records.

    Args:
        records: the records of the trials the winner is chosen among (the last rung's, with a halving).
        suite: the tuned suite.
        final: per key, the configurations of the last rung (a halving's survivors); default: every point.
        earlier: per key, what the earlier rungs of a halving spent (``halving.py``: trials, trials_ok, seconds,
            trial_epochs, rungs, planned_trial_epochs, eta); default: none (a grid).

    Returns:
        ``tuned`` (key → the winning configuration, ``None`` when no trial succeeded) and ``facts`` (key → what was
        searched, the budget, the trials that ran and succeeded, what won, its score and metric, the trial seed, the
        scheduler, the trial-epochs really spent and planned, and the trials' total seconds).
    """
    by_name = {(r["backend"], r["model"], r["strategy"], r["dataset"]): r for r in latest_by_cell(records)}
    higher = suite.options.select_by != "loss"
    tuned: dict[str, dict[str, float] | None] = {}
    facts: dict[str, dict[str, Any]] = {}
    for backend in suite.backends:
        for model in suite.models:
            for dataset in suite.datasets:
                for name in suite.strategies:
                    row = get_strategy(name)
                    space = search_of(row)
                    key = tuning_key(backend, model, name, dataset)
                    configs = space.configs() if final is None or key not in final else final[key]
                    best: tuple[float, dict[str, float]] | None = None
                    seconds, ran, ok, epochs = 0.0, 0, 0, 0
                    for config in configs:
                        record = by_name.get((backend, model, trial_name(row, config), dataset))
                        if record is None:
                            continue
                        ran += 1
                        seconds += float(record.get("wall_s") or 0.0)
                        epochs += trial_epochs(record)
                        score = trial_score(record)
                        if score is None:
                            continue
                        ok += 1
                        if best is None or is_better(score, best[0], higher):
                            best = (score, config)
                    before = (earlier or {}).get(key)
                    tuned[key] = None if best is None else best[1]
                    facts[key] = {
                        "searched": space.describe(),
                        "budget": space.size,
                        "scheduler": "grid" if before is None else "halving",
                        "trials": ran if before is None else before["trials"],
                        "trials_ok": ok if before is None else before["trials_ok"],
                        "won": None if best is None else best[1],
                        "by": suite.options.select_by,
                        "val_score": None if best is None else best[0],
                        "seed": suite.seeds[0],
                        "tuning_s": seconds + (0.0 if before is None else before["seconds"]),
                        "trial_epochs": epochs + (0 if before is None else before["trial_epochs"]),
                        "planned_trial_epochs": space.size * planned_epochs(row, suite.options.epochs)
                        if before is None
                        else before["planned_trial_epochs"],
                        "eta": None if before is None else before.get("eta"),
                        "rungs": None
                        if before is None
                        else [*before["rungs"], {"trials": ran, "epochs": suite.options.epochs}],
                    }
    return tuned, facts


def planned_epochs(strategy: Strategy, epochs: int) -> int:
    """The epochs over images one trial of ``strategy`` plans at ``epochs``: ``epochs`` when its backbone trains on
    images (``halving.halved``), else 0 (a probe's epochs over cached features, a scikit-learn fit)."""
    return epochs if halved(strategy) else 0


def tuned_strategy(strategy: Strategy, cell: CellConfig, options: RunOptions) -> tuple[Strategy, dict[str, Any]]:
    """``strategy`` with the configuration its trials chose for ``cell`` (its name kept), and the record's facts.

    Raises:
        TuningError: no winner for the cell (trials not run, or every one failed).
    """
    key = tuning_key(cell.backend, cell.model, cell.strategy, cell.dataset)
    if key not in options.tuned:
        raise TuningError(f"--tune: no tuning trials were run for {key}; run the suite with `tlbench run --tune`")
    config = options.tuned[key]
    if config is None:
        raise TuningError(f"--tune: every tuning trial of {key} failed; see {TUNING_DIR}/results.jsonl")
    facts = dict(options.tuning_facts.get(key, {}))
    return with_config(strategy, config), facts


__all__ = [
    "TRIAL_BUDGET",
    "TUNING_DIR",
    "TuningError",
    "planned_epochs",
    "search_of",
    "select_winners",
    "trial_score",
    "trial_suite",
    "tuned_strategy",
    "tuning_key",
]
