"""The incremental report on synthetic records: per-step means, cumulative seconds, the paired final gap."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from tlbench.benchmarks.reporting.incremental import (
    gap_table,
    incremental_sections,
    paired_gaps,
    step_frame,
    step_table,
)

#: final accuracy per (seed, mode) after step 2; step 1 is 0.60 for every mode of a seed
FINAL = {
    (0, "continue"): 0.70,
    (0, "retrain"): 0.80,
    (0, "shrink_perturb"): 0.78,
    (1, "continue"): 0.74,
    (1, "retrain"): 0.78,
    (1, "shrink_perturb"): 0.80,
    (2, "continue"): 0.72,
    (2, "retrain"): 0.79,
    (2, "shrink_perturb"): 0.79,
}
STEP_S = {"continue": 4.0, "retrain": 10.0, "shrink_perturb": 5.0}


def record(seed: int, strategy: str = "full_finetune") -> dict:
    rows = []
    for mode in ("continue", "retrain", "shrink_perturb"):
        rows.append(
            {
                "increment_step": 1,
                "increment_mode": mode,
                "train_images": 50,
                "accuracy": 0.6,
                "roc_auc": 0.7,
                "train_s": 6.0,
                "cumulative_train_s": 6.0,
            }
        )
        rows.append(
            {"increment_step": 2, "increment_mode": mode, "train_images": 100, "accuracy": FINAL[seed, mode],
             "roc_auc": 0.8, "train_s": STEP_S[mode], "cumulative_train_s": 6.0 + STEP_S[mode]}
        )  # fmt: skip
    return {
        "backend": "timm",
        "model": "m",
        "strategy": strategy,
        "dataset": "d",
        "seed": seed,
        "status": "ok",
        "increments": {"steps": 2, "modes": ["continue", "retrain", "shrink_perturb"], "rows": rows},
    }


RECORDS = [record(0), record(1), record(2)]


def test_the_step_frame_has_one_row_per_seed_step_and_mode_and_skips_other_records():
    steps = step_frame([*RECORDS, {"status": "ok", "increments": None}, {**record(2), "seed": 3, "status": "failed"}])
    assert len(steps) == 3 * 2 * 3
    assert set(steps["mode"]) == {"continue", "retrain", "shrink_perturb"}


def test_the_step_table_gives_the_mean_over_seeds_per_step_and_mode():
    table = step_table(step_frame(RECORDS)).set_index("step")
    assert table.loc[1, "images"] == 50 and table.loc[2, "images"] == 100
    assert table.loc[1, "continue accuracy"] == "0.600 ± 0.000 (n=3)"
    half = sps.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)  # continue: 0.70, 0.74, 0.72 (sd 0.02)
    assert table.loc[2, "continue accuracy"] == f"0.720 ± {half:.3f} (n=3)"
    assert table.loc[2, "retrain cumulative training (s)"] == "16.0 ± 0.0 (n=3)"
    assert table.loc[2, "continue cumulative training (s)"] == "10.0 ± 0.0 (n=3)"


def test_the_final_gap_is_paired_by_seed_with_its_t_interval():
    gaps = paired_gaps(step_frame(RECORDS), "continue").iloc[0]
    diffs = [-0.10, -0.04, -0.07]  # continue - retrain per seed
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert gaps["n"] == 3
    assert gaps["gap"] == pytest.approx(-0.07)
    assert (gaps["low"], gaps["high"]) == pytest.approx((mean - half, mean + half))
    assert gaps["seconds_saved"] == pytest.approx(6.0)  # retrain 16 s, continue 10 s
    shrink = paired_gaps(step_frame(RECORDS), "shrink_perturb").iloc[0]
    assert shrink["gap"] == pytest.approx(0.0) and shrink["seconds_saved"] == pytest.approx(5.0)


def test_one_seed_has_no_interval_and_the_text_says_n():
    table = gap_table(step_frame([record(0)]))
    assert table.loc[0, "continue - retrain accuracy"] == "-0.100 (n=1)"
    assert table.loc[0, "continue seconds saved (s)"] == "6.0"


def test_sections_appear_only_with_increments():
    assert incremental_sections([{"status": "ok", "increments": None, "strategy": "x"}]) == []
    sections = incremental_sections(RECORDS, metric="roc_auc")
    assert [s.title for s in sections] == [
        "Incremental data — roc_auc and cumulative training seconds per step",
        "Incremental data — continue or retrain?",
    ]
    assert sections[1].table.loc[0, "continue - retrain roc_auc"] == "+0.000 [+0.000, +0.000] (n=3)"


def test_the_plot_is_written(tmp_path):
    from tlbench.benchmarks.reporting.incremental import draw_incremental_plot

    path = draw_incremental_plot(step_frame(RECORDS), tmp_path / "plots" / "incremental.png")
    assert path is not None and path.stat().st_size > 10_000
    assert draw_incremental_plot(step_frame([]), tmp_path / "none.png") is None


def test_the_console_line_gives_each_modes_last_step():
    from tlbench.benchmarks.reporting.incremental import increments_note

    assert increments_note(record(0)) == (
        "; after 2 steps: continue 0.700 (10.0 s), retrain 0.800 (16.0 s), shrink_perturb 0.780 (11.0 s)"
    )
    assert increments_note({"increments": None}) == ""


def test_every_warm_start_gets_a_gap_to_retrain_in_the_known_order():
    """``shrink_pretrained`` (listed before ``continue`` here) gets its own gap columns, after ``continue``'s."""
    records = []
    for seed, final in ((0, 0.81), (1, 0.80), (2, 0.82)):
        rec = record(seed)
        rows = rec["increments"]["rows"]
        pretrained = [
            {**row, "increment_mode": "shrink_pretrained"} for row in rows if row["increment_mode"] == "retrain"
        ]
        pretrained[-1] = {**pretrained[-1], "accuracy": final, "train_s": 7.0, "cumulative_train_s": 13.0}
        rec["increments"]["rows"] = pretrained + rows
        records.append(rec)
    steps = step_frame(records)
    table = gap_table(steps)
    assert list(table.columns[4:]) == [
        "continue - retrain accuracy",
        "continue seconds saved (s)",
        "shrink_perturb - retrain accuracy",
        "shrink_perturb seconds saved (s)",
        "shrink_pretrained - retrain accuracy",
        "shrink_pretrained seconds saved (s)",
    ]
    gaps = [0.81 - 0.80, 0.80 - 0.78, 0.82 - 0.79]
    low, high = sps.t.interval(0.95, 2, loc=sum(gaps) / 3, scale=sps.sem(gaps))
    assert table.loc[0, "shrink_pretrained - retrain accuracy"] == f"+0.020 [{low:+.3f}, {high:+.3f}] (n=3)"
    assert table.loc[0, "shrink_pretrained seconds saved (s)"] == "3.0"  # 16.0 - 13.0
    assert [c for c in step_table(steps).columns if c.endswith(" accuracy")] == [
        f"{m} accuracy" for m in ("continue", "retrain", "shrink_perturb", "shrink_pretrained")
    ]
