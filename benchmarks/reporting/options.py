"""What ``tlbench report`` decides with: the selection metric, the operating point, the positive class.

Values are checked here, so that a bad ``--select-by`` or ``--operating-point`` is one line naming the value and
what was expected (the command line turns the ``ReportOptionError`` into exit code 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: ``--select-by`` choices: ``auto`` is ROC-AUC when every configuration of a dataset has one, else accuracy
SELECT_CHOICES = ("auto", "roc_auc", "accuracy")


class ReportOptionError(ValueError):
    """A report option with a value the report cannot use (one line, for exit code 2)."""


@dataclass(frozen=True)
class OperatingPoint:
    """How the decision threshold of a binary classifier is chosen on the validation split.

    Attributes:
        kind: ``youden`` (maximize sensitivity + specificity − 1) or ``sensitivity`` (the highest threshold whose
            validation sensitivity reaches ``target``, i.e. the best specificity at that sensitivity).
        target: the sensitivity to reach, for ``kind == "sensitivity"``.
    """

    kind: str = "youden"
    target: float = math.nan

    def describe(self) -> str:
        """``Youden's J`` or ``sensitivity ≥ 0.95``."""
        return "Youden's J" if self.kind == "youden" else f"sensitivity ≥ {self.target:g}"


def parse_operating_point(text: str) -> OperatingPoint:
    """``youden`` or ``sens:X`` with 0 < X < 1.

    Raises:
        ReportOptionError: anything else, naming the value and the accepted forms.
    """
    value = str(text).strip().lower()
    if value == "youden":
        return OperatingPoint()
    if value.startswith("sens:"):
        try:
            target = float(value[5:])
        except ValueError:
            target = math.nan
        if 0 < target < 1:
            return OperatingPoint("sensitivity", target)
    raise ReportOptionError(
        f"invalid --operating-point {text!r}: expected youden or sens:X with 0 < X < 1 (e.g. sens:0.95)"
    )


@dataclass(frozen=True)
class ReportOptions:
    """The report's decision settings.

    Attributes:
        select_by: ``auto``, ``roc_auc`` or ``accuracy``: the metric the answer ranks by.
        operating_point: how binary thresholds are chosen on validation.
        positive_class: the class name counted as positive for sensitivity (default: the class not named
            normal/benign/healthy/negative, else the second class).
        alpha: significance level of the tests.
    """

    select_by: str = "auto"
    operating_point: OperatingPoint = OperatingPoint()
    positive_class: str | None = None
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.select_by not in SELECT_CHOICES:
            raise ReportOptionError(
                f"invalid --select-by {self.select_by!r}: expected one of {', '.join(SELECT_CHOICES)}"
            )
