"""What ``--tune`` searched and what won, as one note of the report (read from the records' ``tuning`` column)."""

from __future__ import annotations

from typing import Any

import pandas as pd


def _config(config: dict[str, Any] | None) -> str:
    return ", ".join(f"{key}={value:g}" for key, value in (config or {}).items()) or "nothing (every trial failed)"


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
            + (f", {seconds:.0f} s" if isinstance(seconds, (int, float)) else "")
            + ")"
        )
    first = next(iter(seen.values()))
    return (
        f"Tuned on validation (`--tune`): every strategy got the same budget of trials, trained on train and scored on "
        f"val on seed {first.get('seed')} (never on test); the winner then ran on every seed (`tuning_s`: the trials' "
        "seconds, apart from the cells' own): " + "; ".join(parts) + "."
    )
