"""Plan phases for backend tests: what the cell procedure would apply, made from the strategy table."""

from __future__ import annotations

from typing import Any

from tlbench.core.plan import PhasePlan, make_plan
from tlbench.core.strategies import STRATEGIES, Strategy


def phase(
    backend: Any, strategy: str | Strategy, name: str | None = None, *, epochs: int = 3, **options: Any
) -> PhasePlan:
    """The phase ``name`` (default: the last, i.e. the strategy's own trainability) of the plan of ``strategy``
    over ``backend.stages()``; ``options`` go to ``make_plan`` (``optimizer``, ``augment``, ``seed``...)."""
    row = STRATEGIES[strategy] if isinstance(strategy, str) else strategy
    plan = make_plan(row, backend.stages(), epochs=epochs, **options)
    if name is None:
        return plan.phases[-1]
    return next(p for p in plan.phases if p.name == name)
