"""``--increments``, ``--increment-modes``, ``--shrink-perturb``: checked once at the edge, one line and exit 2."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.cli import build_parser, main, suite_from_args


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--increments", "1"], "--increments must be >= 2 (chunks of the train split), got 1"),
        (["--increment-modes", "continue"], "--increment-modes 'continue' needs --increments K"),
        (["--shrink-perturb", "0.3,0.1"], "--shrink-perturb '0.3,0.1' needs --increments K"),
        (
            ["--increments", "3", "--increment-modes", "continue,warm"],
            "--increment-modes 'continue,warm' is not a list of distinct modes; expected some of: continue, retrain, "
            "shrink_perturb, shrink_pretrained",
        ),
        (
            ["--increments", "3", "--increment-modes", "retrain,retrain"],
            "--increment-modes 'retrain,retrain' is not a list of distinct modes",
        ),
        (
            ["--increments", "3", "--increment-modes", "continue,retrain", "--shrink-perturb", "0.3,0.1"],
            "--shrink-perturb '0.3,0.1' needs shrink_perturb or shrink_pretrained in --increment-modes",
        ),
        (["--increments", "3", "--shrink-perturb", "0.3"], "--shrink-perturb expects LAMBDA,SIGMA (e.g. 0.3,0.0001)"),
        (["--increments", "3", "--shrink-perturb", "0,0.1"], "--shrink-perturb needs 0 < LAMBDA <= 1 and SIGMA >= 0"),
        (["--increments", "3", "--shrink-perturb", "1.5,0.1"], "got '1.5,0.1'"),
        (["--increments", "3", "--shrink-perturb", "0.5,-1"], "got '0.5,-1'"),
        (
            ["--increments", "3", "--strategies", "full_finetune,logreg_probe"],
            "--increments trains a network step by step; strategy 'logreg_probe' runs as a feature_head cell",
        ),
    ],
)
def test_bad_increment_flags_are_one_line_exit_2(flags, message, capsys):
    assert main(["run", "--dataset", "digits", *flags]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tlbench: error: ")
    assert message in lines[0]


def options_of(*flags: str):
    return suite_from_args(build_parser().parse_args(["run", "--dataset", "digits", *flags])).options


def test_the_flags_become_run_options():
    assert options_of().increments is None
    default = options_of("--increments", "4")
    assert (default.increments, default.increment_modes, default.shrink_perturb) == (
        4,
        ("continue", "retrain", "shrink_perturb"),
        (0.3, 0.0001),
    )
    chosen = options_of(
        "--increments", "2", "--increment-modes", "shrink_perturb, continue", "--shrink-perturb", "0.5,0"
    )
    assert (chosen.increment_modes, chosen.shrink_perturb) == (("shrink_perturb", "continue"), (0.5, 0.0))
    toward_pretrained = options_of(
        "--increments", "2", "--increment-modes", "retrain,shrink_pretrained", "--shrink-perturb", "0.7,0.001"
    )
    assert (toward_pretrained.increment_modes, toward_pretrained.shrink_perturb) == (
        ("retrain", "shrink_pretrained"),
        (0.7, 0.001),
    )


def test_the_default_modes_keep_the_fingerprint_of_cells_run_before_shrink_pretrained():
    """Adding a mode to the known ones must not change what the default runs, nor finished cells' fingerprints."""
    assert options_of("--increments", "4").fingerprint("timm") == options_of(
        "--increments", "4", "--increment-modes", "continue,retrain,shrink_perturb"
    ).fingerprint("timm")
    assert options_of("--increments", "4").fingerprint("timm") != options_of(
        "--increments", "4", "--increment-modes", "continue,retrain,shrink_pretrained"
    ).fingerprint("timm")
