"""The speed canary: a fixed matmul's GFLOP/s, and the verdict against the machine probe's canary."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.running.canary import canary_gflop_per_s, canary_summary
from tlbench.benchmarks.running.contention import describe
from tlbench.benchmarks.running.results import SLOW_RATIO


def test_canary_measures_a_positive_rate_quickly():
    rate = canary_gflop_per_s(min_time_s=0.02, side=128)
    assert 0.01 < rate < 1e5  # GFLOP/s of a 128^3 float32 matmul on any CPU


def test_canary_summary_flags_a_machine_slower_than_probed():
    fine = canary_summary(95.0, 101.0, 100.0)
    assert fine == {"canary_gflop_per_s": [95.0, 101.0], "canary_ratio_to_probe": 0.95, "slower_than_probed": False}
    slow = canary_summary(70.0, 90.0, 100.0)  # the lower of before/after counts
    assert slow["canary_ratio_to_probe"] == pytest.approx(0.7) and slow["slower_than_probed"] is True
    assert SLOW_RATIO == 0.8 and canary_summary(80.0, 80.0, 100.0)["slower_than_probed"] is False
    # an older probe without a canary: recorded, never judged
    assert canary_summary(50.0, 50.0, None) == {
        "canary_gflop_per_s": [50.0, 50.0],
        "canary_ratio_to_probe": None,
        "slower_than_probed": False,
    }


def test_describe_names_steal_and_the_canary():
    summary = {
        "other_cpu_cores_mean": 0.02,
        "machine_cores": 2,
        "other_cpu_cores_p90": 0.03,
        "other_cpu_fraction_mean": 0.01,
        "steal_cpu_fraction_mean": 0.12,
        "disturbed": True,
        "top_other_processes": [],
        **canary_summary(70.0, 72.0, 100.0),
    }
    line = describe(summary)
    assert line.startswith("DISTURBED: SLOWER THAN PROBED: other processes used 0.02 of 2 cores")
    assert "12% stolen by the hypervisor" in line and "speed canary at 70% of the probe's" in line


def test_canary_company_is_the_machine_busy_time_besides_the_canary_itself():
    """Injected clocks: the machine was busy 0.9 CPU s over 0.5 s of wall time, 0.5 of them the canary's own."""
    from tlbench.benchmarks.running.canary import canary_with_company

    busy = iter([10.0, 10.9])
    own = iter([2.0, 2.5])
    wall = iter([100.0, 100.5])
    rate, company = canary_with_company(
        0.01, 64, busy_s=lambda: next(busy), own_s=lambda: next(own), clock=lambda: next(wall)
    )
    assert rate > 0 and company == pytest.approx(0.8)
    # a canary alone on the machine has no company (a negative difference from tick rounding reads 0)
    busy, own, wall = iter([5.0, 5.2]), iter([1.0, 1.25]), iter([0.0, 0.25])
    assert (
        canary_with_company(0.01, 64, busy_s=lambda: next(busy), own_s=lambda: next(own), clock=lambda: next(wall))[1]
        == 0.0
    )


def test_canary_summary_records_its_company_and_describe_quotes_the_busier():
    summary = canary_summary(70.0, 90.0, 100.0, (0.02, 0.61))
    assert summary["canary_company_cpu_cores"] == [0.02, 0.61]
    line = describe(
        {
            "other_cpu_cores_mean": 0.0,
            "machine_cores": 2,
            "other_cpu_cores_p90": 0.0,
            "other_cpu_fraction_mean": 0.0,
            "disturbed": False,
            **summary,
        }
    )
    assert "speed canary at 70% of the probe's (0.61 cores busy beside it)" in line
    assert "canary_company_cpu_cores" not in canary_summary(70.0, 90.0, 100.0)
