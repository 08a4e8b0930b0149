"""The one error type backends raise for problems a user can fix (framework-free, imported by every backend module)."""

from __future__ import annotations


class BackendError(RuntimeError):
    """A problem the user can fix (unknown model, missing weights...), reported in one line."""
