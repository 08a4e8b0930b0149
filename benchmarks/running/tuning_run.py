"""``--tune``: run a suite's trial cells, choose each strategy's configuration on validation, then the suite itself.

The trials are an ordinary suite (``tuning.trial_suite``) in ``<suite>/tuning/``: resumable, parallel with the same
executor, recorded in their own ``results.jsonl``. The suite's cells then run with the winners in their options
(``RunOptions.tuned``, part of their fingerprint: other winners re-run them), on every requested seed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import SuiteConfig
from .results import load_results
from .runner import RESULTS_FILE, run_suite
from .tuning import TUNING_DIR, select_winners, trial_suite


def run_tuned_suite(suite: SuiteConfig, out_dir: Path, **run_options: Any) -> list[dict[str, Any]]:
    """Tune every strategy of ``suite`` on validation with the same trial budget, then run ``suite`` with the winners.

    Args:
        suite: the matrix and options (``options.tune`` set).
        out_dir: suite directory; the trials go to ``out_dir/tuning``.
        **run_options: passed to both ``run_suite`` calls (executor, cell runner, timeout, callbacks...).

    Returns:
        The records of the suite's own cells produced by this call (the trials' are in ``out_dir/tuning``).
    """
    trials = trial_suite(suite)
    message = run_options.get("on_message")
    if message is not None:
        message(f"tuning: {len(trials.cells())} trial cell(s) in {Path(out_dir) / TUNING_DIR}")
    run_suite(trials, Path(out_dir) / TUNING_DIR, **run_options)
    tuned, facts = select_winners(load_results(Path(out_dir) / TUNING_DIR / RESULTS_FILE), suite)
    final = replace(suite, options=replace(suite.options, tuned=tuned, tuning_facts=facts))
    return run_suite(final, Path(out_dir), **run_options)
