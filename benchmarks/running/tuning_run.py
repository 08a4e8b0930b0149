"""``--tune``: run a suite's trial cells, choose each strategy's configuration on validation, then the suite itself.

The trials are ordinary suites (``tuning.trial_suite``): resumable, parallel with the same executor, recorded in their
own ``results.jsonl``. With ``--tune-scheduler grid`` every point runs for the suite's epochs in ``<suite>/tuning/``.
With ``halving`` (the default) the trials of strategies that train a backbone first run short in
``<suite>/tuning/rungs/<i>/`` (``halving.rungs``, eta ``--tune-eta``), and only each rung's survivors are re-run for
longer; the last rung
(full epochs) runs in ``<suite>/tuning/`` beside every point of the probes, and the winner is chosen there. The
suite's cells then run with the winners in their options (``RunOptions.tuned``, part of their fingerprint: other
winners re-run them), on every requested seed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ...core.strategies import get_strategy, trial_name
from .config import SuiteConfig
from .halving import halved, planned_trial_epochs, rungs, survivors, trial_epochs
from .results import latest_by_cell, load_results
from .runner import RESULTS_FILE, run_suite
from .tuning import TUNING_DIR, search_of, select_winners, trial_score, trial_suite, tuning_key

#: sub-folder of ``<suite>/tuning/`` holding a halving's earlier rungs (``rungs/0``, ``rungs/1``, ...)
RUNGS_DIR = "rungs"

Configs = dict[str, list[dict[str, float]]]


def halved_strategies(suite: SuiteConfig) -> tuple[str, ...]:
    """The strategies of ``suite`` whose trials a halving shortens: with ``--tune-scheduler halving``, those training
    a backbone on images (``halving.halved``) whose first rung is shorter than the suite's epochs."""
    if suite.options.tune_scheduler != "halving":
        return ()
    options = suite.options
    return tuple(
        name
        for name in suite.strategies
        if halved(get_strategy(name))
        and rungs(search_of(get_strategy(name)).size, options.epochs, options.tune_eta)[0].epochs < options.epochs
    )


def _keys(suite: SuiteConfig, strategies: tuple[str, ...]) -> list[tuple[str, str, str, str]]:
    return [(b, m, s, d) for b in suite.backends for m in suite.models for d in suite.datasets for s in strategies]


def _run_per_group(
    suite: SuiteConfig,
    configs: dict[tuple[str, str, str, str], list[dict[str, float]]],
    epochs: int,
    directory: Path,
    run_options: dict[str, Any],
) -> None:
    """Run the trials ``configs`` names (per backend × model × strategy × dataset) for ``epochs`` in ``directory``:
    one trial suite per backend × model × dataset, since each has its own survivors."""
    groups: dict[tuple[str, str, str], Configs] = {}
    for (backend, model, strategy, dataset), points in configs.items():
        groups.setdefault((backend, model, dataset), {})[strategy] = points
    for (backend, model, dataset), per_strategy in groups.items():
        part = replace(
            suite,
            backends=(backend,),
            models=(model,),
            datasets=(dataset,),
            strategies=tuple(name for name in suite.strategies if per_strategy.get(name)),
        )
        if part.strategies:
            run_suite(trial_suite(part, per_strategy, epochs=epochs), directory, **run_options)


def run_tuned_suite(suite: SuiteConfig, out_dir: Path, **run_options: Any) -> list[dict[str, Any]]:
    """Tune every strategy of ``suite`` on validation with the same trial budget, then run ``suite`` with the winners.

    Args:
        suite: the matrix and options (``options.tune`` set; ``options.tune_scheduler``: ``halving`` or ``grid``).
        out_dir: suite directory; the trials go to ``out_dir/tuning`` (a halving's earlier rungs to
            ``out_dir/tuning/rungs/<i>``).
        **run_options: passed to every ``run_suite`` call (executor, cell runner, timeout, callbacks...).

    Returns:
        The records of the suite's own cells produced by this call (the trials' are in ``out_dir/tuning``).
    """
    tuning_dir = Path(out_dir) / TUNING_DIR
    epochs = suite.options.epochs
    higher = suite.options.select_by != "loss"
    message = run_options.get("on_message")
    shortened = halved_strategies(suite)
    final: dict[tuple[str, str, str, str], list[dict[str, float]]] = {
        key: search_of(get_strategy(key[2])).configs() for key in _keys(suite, suite.strategies)
    }
    earlier: dict[str, dict[str, Any]] = {}
    if shortened:
        points = {key: final[key] for key in _keys(suite, shortened)}
        plan = {key: rungs(len(configs), epochs, suite.options.tune_eta) for key, configs in points.items()}
        for key, configs in points.items():
            earlier[tuning_key(*key)] = {
                "trials": len(configs),
                "trials_ok": 0,
                "seconds": 0.0,
                "trial_epochs": 0,
                "rungs": [],
                "planned_trial_epochs": planned_trial_epochs(plan[key]),
                "eta": suite.options.tune_eta,
            }
        depth = len(next(iter(plan.values())))
        for index in range(depth - 1):
            rung_epochs = next(iter(plan.values()))[index].epochs
            directory = tuning_dir / RUNGS_DIR / str(index)
            if message is not None:
                count = sum(len(configs) for configs in points.values())
                message(
                    f"tuning: halving rung {index}: {count} trial cell(s) for {rung_epochs} epoch(s) in {directory}"
                )
            _run_per_group(suite, points, rung_epochs, directory, run_options)
            records = {
                (r["backend"], r["model"], r["strategy"], r["dataset"]): r
                for r in latest_by_cell(load_results(directory / RESULTS_FILE))
            }
            for key, configs in points.items():
                row = get_strategy(key[2])
                mine = [records.get((key[0], key[1], trial_name(row, config), key[3])) for config in configs]
                facts = earlier[tuning_key(*key)]
                facts["seconds"] += sum(float(r.get("wall_s") or 0.0) for r in mine if r is not None)
                facts["trial_epochs"] += sum(trial_epochs(r) for r in mine if r is not None)
                scores = [None if r is None else trial_score(r) for r in mine]
                if index == 0:
                    facts["trials_ok"] = sum(score is not None for score in scores)
                facts["rungs"].append({"trials": sum(r is not None for r in mine), "epochs": rung_epochs})
                keep = plan[key][index + 1].trials
                points[key] = survivors(list(zip(configs, scores, strict=True)), keep, higher)
        final.update(points)
    if message is not None:
        message(f"tuning: {sum(len(c) for c in final.values())} trial cell(s) for {epochs} epoch(s) in {tuning_dir}")
    if shortened:
        _run_per_group(suite, final, epochs, tuning_dir, run_options)
    else:
        run_suite(trial_suite(suite), tuning_dir, **run_options)
    tuned, facts = select_winners(
        load_results(tuning_dir / RESULTS_FILE),
        suite,
        final={tuning_key(*key): configs for key, configs in final.items()},
        earlier=earlier,
    )
    final_suite = replace(suite, options=replace(suite.options, tuned=tuned, tuning_facts=facts))
    return run_suite(final_suite, Path(out_dir), **run_options)
