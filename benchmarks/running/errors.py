"""One-line errors: what a failed cell, a failed inference pass and the command line print and record."""

from __future__ import annotations

from ...backends import BackendError, OptionsError
from ...core.cell_kinds import CellKindError
from ...core.plan import PlanError
from ...datasets import DatasetError

#: errors whose message is written for the user: recorded without the exception type
USER_ERRORS = (BackendError, DatasetError, OptionsError, PlanError, CellKindError, KeyError)


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line (user errors keep their own message without the type), at most 500 chars."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, USER_ERRORS):
        return message.strip("'\"")
    return f"{type(exc).__name__}: {message}"[:500]
