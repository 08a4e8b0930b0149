"""The ``tlbench run`` flags of the data-incremental scenario (``--increments``, ``--increment-modes``,
``--shrink-perturb``): declared and checked here, once, at the edge; ``cli.py`` only calls these two functions."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..core.cell_kinds import cell_kind
from ..core.strategies import get_strategy
from .running.config import DEFAULT_INCREMENT_MODES, INCREMENT_MODES, SHRINK_MODES, SHRINK_PERTURB


def add_increment_arguments(run: argparse.ArgumentParser) -> None:
    """Add the three flags to the ``run`` parser."""
    run.add_argument(
        "--increments",
        type=int,
        default=None,
        metavar="K",
        help="data-incremental scenario: the train split arrives in K >= 2 stratified (with --group-by, patient-whole) "
        "chunks; step k trains on chunks 1..k, tested after every step, per --increment-modes (default: off)",
    )
    run.add_argument(
        "--increment-modes",
        default=None,
        metavar="MODES",
        help="with --increments, how steps 2..K start: comma-separated from continue (the previous step's weights), "
        "retrain (the pretrained weights), shrink_perturb (the previous weights shrunk toward zero and perturbed; "
        "Ash & Adams 2020), shrink_pretrained (the previous weights shrunk toward the pretrained ones and perturbed) "
        f"(default: {','.join(DEFAULT_INCREMENT_MODES)})",
    )
    run.add_argument(
        "--shrink-perturb",
        default=None,
        metavar="LAMBDA,SIGMA",
        help="with --increment-modes shrink_perturb: w <- LAMBDA * w + N(0, SIGMA^2) on the trained parameters; "
        "shrink_pretrained: w <- w0 + LAMBDA * (w - w0) + N(0, SIGMA^2), w0 the pretrained weights "
        f"(default: {SHRINK_PERTURB[0]:g},{SHRINK_PERTURB[1]:g})",
    )


def increment_options(args: argparse.Namespace, strategies: tuple[str, ...], models: list[str]) -> dict[str, Any]:
    """The ``RunOptions`` fields of the three flags (empty when ``--increments`` is not given).

    Raises:
        ValueError: a bad value or combination (one line quoting it; the command line exits 2).
    """
    if args.increments is None:
        for flag, value in (("--increment-modes", args.increment_modes), ("--shrink-perturb", args.shrink_perturb)):
            if value is not None:
                raise ValueError(f"{flag} {value!r} needs --increments K")
        return {}
    if args.increments < 2:
        raise ValueError(f"--increments must be >= 2 (chunks of the train split), got {args.increments}")
    modes = tuple(DEFAULT_INCREMENT_MODES)
    if args.increment_modes is not None:
        modes = tuple(m.strip() for m in args.increment_modes.split(",") if m.strip())
        unknown = [m for m in modes if m not in INCREMENT_MODES]
        if not modes or unknown or len(set(modes)) != len(modes):
            raise ValueError(
                f"--increment-modes {args.increment_modes!r} is not a list of distinct modes; expected some of: "
                f"{', '.join(INCREMENT_MODES)}"
            )
    shrink_perturb = tuple(SHRINK_PERTURB)
    if args.shrink_perturb is not None:
        if not set(SHRINK_MODES) & set(modes):
            raise ValueError(
                f"--shrink-perturb {args.shrink_perturb!r} needs {' or '.join(SHRINK_MODES)} in --increment-modes"
            )
        shrink_perturb = _lambda_sigma(args.shrink_perturb)
    for name in strategies:
        for model in models:
            kind = cell_kind(get_strategy(name), model).name
            if kind != "network":
                raise ValueError(
                    f"--increments trains a network step by step; strategy {name!r} runs as a {kind} cell "
                    "(a scikit-learn head on pooled features); drop it or --increments"
                )
    return {"increments": args.increments, "increment_modes": modes, "shrink_perturb": shrink_perturb}


def _lambda_sigma(text: str) -> tuple[float, float]:
    """``"0.3,0.0001"`` -> ``(0.3, 0.0001)``: lambda in (0, 1], sigma >= 0, both finite."""
    try:
        shrink, sigma = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--shrink-perturb expects LAMBDA,SIGMA (e.g. 0.3,0.0001), got {text!r}") from None
    if not (0 < shrink <= 1 and math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"--shrink-perturb needs 0 < LAMBDA <= 1 and SIGMA >= 0, got {text!r}")
    return shrink, sigma
