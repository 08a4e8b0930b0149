"""What ``--tune`` searched and what won, as one note of the report (read from the records' ``tuning`` column)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def _config(config: dict[str, Any] | None) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in (config or {}).items()) or "nothing (every trial failed)"


def _spent(tuning: dict[str, Any]) -> str:
    """``, halving 8 x 5 ep -> 3 x 15 ep: 85 trial-epochs on images (a grid: 120)``: the budget really spent (``""``
    for records made before it was recorded)."""
    spent = tuning.get("trial_epochs")
    if not isinstance(spent, (int, float)):
        return ""
    rungs = tuning.get("rungs")
    if tuning.get("scheduler") == "halving" and rungs:
        grid = tuning.get("budget", 0) * rungs[-1]["epochs"]
        steps = " -> ".join(f"{rung['trials']} x {rung['epochs']} ep" for rung in rungs)
        return f", halving {steps}: {spent:g} trial-epochs on images (a grid: {grid:g})"
    return f", grid: {spent:g} trial-epochs on images"


def tuning_note(frame: pd.DataFrame) -> str:
    """``Tuned on validation ...``: per backend/model/strategy/dataset, the search, the budget, the winner and its
    validation score, and the seconds all trials took (``""`` when no record was tuned)."""
    if "tuning" not in frame.columns:
        return ""
    seen: dict[tuple, dict[str, Any]] = {}
    for record in frame.to_dict("records"):
        tuning = record.get("tuning")
        if isinstance(tuning, dict) and "searched" in tuning:
            key = (record["backend"], record["model"], record["strategy"], record["dataset"])
            seen.setdefault(key, {**tuning, "tuning_s": record.get("tuning_s")})
    if not seen:
        return ""
    parts = []
    for (backend, model, strategy, dataset), tuning in seen.items():
        score = tuning.get("val_score")
        shown = f"{score:.3f}" if isinstance(score, (int, float)) else "-"
        seconds = tuning.get("tuning_s")
        parts.append(
            f"{backend}/{model}/{strategy} on {dataset}: {_config(tuning.get('won'))} won (val {tuning.get('by')} "
            f"{shown}; {tuning.get('trials_ok')}/{tuning.get('budget')} trials of {tuning.get('searched')}"
            + _spent(tuning)
            + (f", {seconds:.0f} s" if isinstance(seconds, (int, float)) else "")
            + ")"
        )
    first = next(iter(seen.values()))
    return (
        f"Tuned on validation (`--tune`): every strategy got the same budget of trials, trained on train and scored on "
        f"val on seed {first.get('seed')} (never on test); the winner then ran on every seed (`tuning_s`: the trials' "
        "seconds, apart from the cells' own; trial-epochs: the epochs over images every trial really ran, a probe's "
        "epochs over cached features not counted): " + "; ".join(parts) + "."
    )
