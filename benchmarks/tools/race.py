"""The fair race (issue 22): a tuned suite beside its untuned twin, and whether each committed conclusion survives.

Both suites run the same recipe (epochs, schedule, early stopping, selection metric) and differ only by ``--tune``.
``race_page(untuned, tuned)`` renders, from their records (never typed):

1. one table per dataset: each strategy's test accuracy and ROC-AUC (mean ± the 95 % Student-t half-width over
   seeds) untuned and tuned side by side, its rank by mean accuracy in each suite (1 = best), what won its tuning
   (the configuration, the trial-epochs over images spent) and the tuning's seconds;
2. one verdict per committed conclusion, with its rule:

   - **LP-FT equals LP**: ``lp_ft`` against ``linear_probe``, paired by seed: ``identical`` (every seed's test
     accuracy and ROC-AUC equal), else ``within noise`` (the 95 % t interval of the per-seed accuracy differences
     holds 0), else ``LP-FT better`` / ``LP better``;
   - **full fine-tuning's rank** ("plain full fine-tuning is never first"): ``full_finetune``'s rank by mean accuracy,
     and whether the best strategy is within noise of it (paired, the same rule);
   - **the probe gap** (MedMNIST+: fine-tuning beats probes; committed: it does not appear): the best fine-tuning
     strategy (pretrained, backbone trained) against the best probe (pretrained, frozen backbone) by mean accuracy,
     paired by seed: ``gap`` (fine-tuning better beyond noise), ``no gap`` (within noise) or ``probe ahead``.

   A conclusion **survives** when the tuned suite gives the same state as the suite it was committed from (given as
   ``committed``: one fixed recipe, e.g. ``results/strategies_breastmnist``; else the untuned suite), else it is
   **changed** (``reversed`` when the state flips to its opposite), and with all three suites the verdict says
   what moved it: **by the recipe** (training to convergence with its selection rule: the untuned suite already
   differs and tuning keeps that), **by tuning**, or **by both**; **undetermined** when a side lacks the strategies
   or has a single seed (no interval). A suite not run yet is said so, nothing fails.

``python -m tlbench.benchmarks.tools.race results/untuned_breastmnist results/tuned_breastmnist`` prints the page;
``docs/findings.md`` holds it per dataset as a generated block (``findings.py``, ``kind=race``), and the README the
verdicts of every dataset in one table (``race_verdicts``, ``kind=race_verdicts``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...core.strategies import get_strategy
from ..reporting.stats import t_interval
from .findings_cells import FindingsError, finished_records, format_cell

EXIT_USAGE = 2
#: the committed conclusions a race checks, in the order they are reported
CONCLUSIONS = ("LP-FT equals LP", "full fine-tuning's rank", "the probe gap")
#: states that are each other's opposite (a change between them is a reversal)
OPPOSITES = {("LP-FT better", "LP better"), ("gap", "probe ahead"), ("first", "not first")}


def by_seed(records: Sequence[dict[str, Any]], strategy: str, column: str) -> dict[int, float]:
    """``{seed: value}`` of ``column`` for ``strategy``'s records (finite numbers only)."""
    found = {}
    for record in records:
        value = record.get(column)
        if record.get("strategy") == strategy and isinstance(value, (int, float)) and math.isfinite(value):
            found[int(record["seed"])] = float(value)
    return found


def mean_of(records: Sequence[dict[str, Any]], strategy: str, column: str = "accuracy") -> float:
    """The mean over seeds (``nan`` without a value)."""
    values = list(by_seed(records, strategy, column).values())
    return sum(values) / len(values) if values else math.nan


def cell(records: Sequence[dict[str, Any]] | None, strategy: str, column: str) -> str:
    """``0.843 ± 0.010`` (mean ± the 95 % t half-width over seeds), ``0.843`` for one seed, ``–`` for none."""
    return format_cell(column, list(by_seed(records or [], strategy, column).values()))


def ranks(records: Sequence[dict[str, Any]], column: str = "accuracy") -> dict[str, int]:
    """Each strategy's rank by mean ``column`` (1 = best; ties share the better rank)."""
    means = {s: mean_of(records, s, column) for s in dict.fromkeys(r["strategy"] for r in records)}
    finite = sorted((m for m in means.values() if not math.isnan(m)), reverse=True)
    return {s: finite.index(m) + 1 for s, m in means.items() if not math.isnan(m)}


def paired(records: Sequence[dict[str, Any]], a: str, b: str, column: str = "accuracy") -> str:
    """``a`` against ``b`` paired by seed: ``a better``/``b better`` when the 95 % t interval of the per-seed
    differences excludes 0, ``within noise`` when it holds it, ``one seed`` with a single pair (no interval)."""
    first, second = by_seed(records, a, column), by_seed(records, b, column)
    diffs = [first[s] - second[s] for s in sorted(set(first) & set(second))]
    if not diffs:
        return "missing"
    if all(d == 0 for d in diffs):
        return "within noise"
    interval = t_interval(diffs)
    if interval.n < 2:
        return "one seed"
    if interval.low > 0:
        return f"{a} better"
    if interval.high < 0:
        return f"{b} better"
    return "within noise"


def lp_ft_state(records: Sequence[dict[str, Any]]) -> str:
    """``identical``, ``within noise``, ``LP-FT better``, ``LP better``, ``one seed`` or ``missing``."""
    same = [
        by_seed(records, "lp_ft", column) == by_seed(records, "linear_probe", column) != {}
        for column in ("accuracy", "roc_auc")
    ]
    if all(same):
        return "identical"
    state = paired(records, "lp_ft", "linear_probe")
    return {"lp_ft better": "LP-FT better", "linear_probe better": "LP better"}.get(state, state)


def full_finetune_state(records: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(``first``/``not first``/``missing``, a detail: the rank and the best's distance in noise)."""
    rank = ranks(records)
    if "full_finetune" not in rank:
        return "missing", "no full_finetune records"
    best = min(rank, key=lambda s: (rank[s], s != "full_finetune"))
    detail = f"rank {rank['full_finetune']} of {len(rank)}"
    if best != "full_finetune":
        state = paired(records, best, "full_finetune")
        how = {"within noise": "within noise of it", f"{best} better": "ahead beyond noise"}.get(state, state)
        detail += f"; the best, `{best}`: {how}"
    return ("first" if rank["full_finetune"] == 1 else "not first"), detail


def probe_gap_state(records: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(``gap``/``no gap``/``probe ahead``/``one seed``/``missing``, a detail: the two strategies compared)."""
    probes, tuned = [], []
    for strategy in dict.fromkeys(r["strategy"] for r in records):
        row = get_strategy(strategy)
        if row.pretrained:
            (probes if row.train_backbone == "none" else tuned).append(strategy)
    if not probes or not tuned:
        return "missing", "no probe or no fine-tuning records"
    probe = max(probes, key=lambda s: mean_of(records, s))
    finetune = max(tuned, key=lambda s: mean_of(records, s))
    state = paired(records, finetune, probe)
    named = {f"{finetune} better": "gap", f"{probe} better": "probe ahead", "within noise": "no gap"}
    gap = mean_of(records, finetune) - mean_of(records, probe)
    return named.get(state, state), f"best fine-tuning `{finetune}` - best probe `{probe}` = {gap:+.3f}"


#: states that say nothing (a strategy not run, a single seed): their verdict is ``undetermined``
UNDETERMINED = ("missing", "one seed")


def verdict(untuned: str, tuned: str) -> str:
    """``survives`` (same state), ``reversed`` (opposite states), ``changed``, or ``undetermined`` when either side
    could not be measured (``UNDETERMINED``)."""
    if untuned in UNDETERMINED or tuned in UNDETERMINED:
        return "undetermined"
    if untuned == tuned:
        return "survives"
    if (untuned, tuned) in OPPOSITES or (tuned, untuned) in OPPOSITES:
        return "reversed"
    return "changed"


def _won(records: Sequence[dict[str, Any]], strategy: str) -> tuple[str, str]:
    """What won ``strategy``'s tuning (and the trial-epochs it spent), and its tuning seconds."""
    for record in records:
        tuning = record.get("tuning")
        if record.get("strategy") == strategy and isinstance(tuning, dict) and "won" in tuning:
            won = ", ".join(f"{k}={v:g}" for k, v in (tuning.get("won") or {}).items()) or "every trial failed"
            spent = tuning.get("trial_epochs")
            won += f" ({spent:g} trial-epochs)" if isinstance(spent, (int, float)) else ""
            seconds = record.get("tuning_s")
            return won, f"{seconds:.0f}" if isinstance(seconds, (int, float)) else "–"
    return "–", "–"


def race_page(untuned_dir: str, tuned_dir: str, root: Path = Path("."), committed_dir: str | None = None) -> str:
    """The side-by-side table and the verdicts of one untuned/tuned pair of suite directories (relative to
    ``root``), as Markdown; a missing suite is said so.

    With ``committed_dir`` (the suite the committed conclusions came from: one fixed recipe, e.g.
    ``results/strategies_breastmnist``), its accuracy and rank come first, each conclusion's state there too, and
    the verdict compares it with the tuned suite's (``why_changed`` says whether the recipe or the tuning moved it).
    """
    untuned, tuned = finished_records(root / untuned_dir), finished_records(root / tuned_dir)
    committed = finished_records(root / committed_dir) if committed_dir else None
    if committed_dir and committed is None:
        raise FindingsError(f"race: committed={committed_dir} has no results.jsonl; expected a committed suite folder")
    missing = [d for d, r in ((untuned_dir, untuned), (tuned_dir, tuned)) if r is None]
    if untuned is None:
        return f"Not run yet: `{untuned_dir}` has no results (" + ", ".join(f"`{d}`" for d in missing) + " missing).\n"
    sides = {"untuned": untuned, "tuned": tuned or []}
    if committed is not None:
        sides = {"committed": committed, **sides}
    rank = {side: ranks(records) for side, records in sides.items()}
    strategies = list(dict.fromkeys(r["strategy"] for records in sides.values() for r in records))
    headers = [f"accuracy {side}" for side in sides] + ["ROC-AUC untuned", "ROC-AUC tuned"]
    headers += [f"rank {side}" for side in sides] + ["won in tuning", "tuning (s)"]
    lines = ["| strategy | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
    for strategy in sorted(strategies, key=lambda s: (rank["tuned"].get(s, 99), rank["untuned"].get(s, 99), s)):
        cells = [cell(records, strategy, "accuracy") for records in sides.values()]
        cells += [cell(untuned, strategy, "roc_auc"), cell(tuned, strategy, "roc_auc")]
        cells += [str(rank[side].get(strategy, "–")) for side in sides]
        cells += list(_won(tuned or [], strategy))
        lines.append(f"| `{strategy}` | " + " | ".join(cells) + " |")
    lines.append("")
    if tuned is None:
        lines.append(f"Not run yet: `{tuned_dir}` has no results; the verdicts wait for it.")
        return "\n".join(lines) + "\n"
    states = {side: conclusion_states(records) for side, records in sides.items()}
    lines += ["| committed conclusion | " + " | ".join(sides) + " | verdict |", "|---" * (len(sides) + 2) + "|"]
    for name in CONCLUSIONS:
        path = [states[side][name][0] for side in sides]
        shown = [state + (f" ({detail})" if detail else "") for state, detail in (states[side][name] for side in sides)]
        lines.append(f"| {name} | " + " | ".join(shown) + f" | {judgement(path)} |")
    return "\n".join(lines) + "\n"


def conclusion_states(records: Sequence[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Each committed conclusion's (state, detail) in one suite's records; the detail is ``""`` where the state says
    it all."""
    return {
        "LP-FT equals LP": (lp_ft_state(records), ""),
        "full fine-tuning's rank": full_finetune_state(records),
        "the probe gap": probe_gap_state(records),
    }


def why_changed(path: Sequence[str]) -> str:
    """For a (committed, untuned, tuned) path of states whose ends differ: what moved the conclusion, `` by the
    recipe`` (training to convergence and its selection rule: the untuned suite already differs, tuning keeps it),
    `` by tuning`` (the untuned suite agrees with the committed one) or `` by both``."""
    committed, untuned, tuned = path
    if untuned == tuned:
        return " by the recipe"
    return " by tuning" if untuned == committed else " by both"


def judgement(path: Sequence[str]) -> str:
    """The verdict on a conclusion from its states along the suites (committed or untuned first, tuned last), bold,
    with what moved it when all three suites are there (``why_changed``)."""
    said = verdict(path[0], path[-1])
    return f"**{said}**" + (why_changed(path) if said != "survives" and len(path) == 3 else "")


def most_accurate(records: Sequence[dict[str, Any]]) -> str | None:
    """The strategy of best mean accuracy (the first by name among equals), ``None`` without one."""
    rank = ranks(records)
    return min(rank, key=lambda s: (rank[s], s)) if rank else None


def race_verdicts(datasets: Sequence[str], root: Path = Path("."), committed: str | None = None) -> str:
    """The README's summary of the race: one column per dataset (``results/untuned_<dataset>`` against
    ``results/tuned_<dataset>``), one row for the most accurate strategy untuned → tuned and one per committed
    conclusion with its verdict: ``**survives** (state)`` when every suite gives the same state, else
    ``**verdict**: state → state`` along the suites (with ``committed``, a prefix such as ``strategies``, the
    committed suite ``results/<committed>_<dataset>`` comes first, where it exists, and the verdict compares it with
    the tuned suite, saying what moved it: ``why_changed``); datasets not run yet are named with their suite files.

    Raises:
        FindingsError: a dataset whose race suite has neither results nor a suite file (a typo).
    """
    rows: dict[str, list[str]] = {"most accurate (untuned → tuned)": [], **{name: [] for name in CONCLUSIONS}}
    waiting = []
    for dataset in datasets:
        untuned = finished_records(root / "results" / f"untuned_{dataset}")
        tuned = finished_records(root / "results" / f"tuned_{dataset}")
        for arm, records in (("untuned", untuned), ("tuned", tuned)):
            if records is None and not (root / "suites" / f"{arm}_{dataset}.toml").is_file():
                raise FindingsError(
                    f"race_verdicts: results/{arm}_{dataset} has no results and no suites/{arm}_{dataset}.toml "
                    f"makes it; expected datasets named like the race's suite files"
                )
        if untuned is None or tuned is None:
            waiting.append(dataset)
            for cells in rows.values():
                cells.append("not run yet")
            continue
        before, after = most_accurate(untuned), most_accurate(tuned)
        accuracy = cell(tuned, after, "accuracy") if after else "–"
        rows["most accurate (untuned → tuned)"].append(f"`{before}` → `{after}` ({accuracy})")
        suites = [untuned, tuned]
        reference = finished_records(root / "results" / f"{committed}_{dataset}") if committed else None
        if reference is not None:
            suites.insert(0, reference)
        states = [conclusion_states(records) for records in suites]
        for name in CONCLUSIONS:
            path = [state[name][0] for state in states]
            said = judgement(path)
            same = said == "**survives**" and len(set(path)) == 1
            rows[name].append(f"**survives** ({path[0]})" if same else f"{said}: " + " → ".join(path))
    lines = ["| | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
    if waiting:
        suites_text = ", ".join(f"`suites/untuned_{d}.toml` + `suites/tuned_{d}.toml`" for d in waiting)
        lines += ["", f"Not run yet: {suites_text} (`tlbench run` each)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the race page of an untuned and a tuned suite directory."""
    parser = argparse.ArgumentParser(prog="python -m tlbench.benchmarks.tools.race", description=__doc__.split("\n")[0])
    parser.add_argument("untuned", help="the untuned suite directory (results/untuned_<dataset>)")
    parser.add_argument("tuned", help="the tuned suite directory (results/tuned_<dataset>)")
    parser.add_argument(
        "--committed", default=None, help="the suite the committed conclusions came from (results/strategies_<dataset>)"
    )
    args = parser.parse_args(argv)
    if not Path(args.untuned).is_dir() and not Path(args.tuned).is_dir():
        print(f"race: error: neither {args.untuned!r} nor {args.tuned!r} is a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        print(race_page(args.untuned, args.tuned, committed_dir=args.committed), end="")
    except FindingsError as exc:
        print(f"race: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
