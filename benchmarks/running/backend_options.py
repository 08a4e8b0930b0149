"""A backend's typed options of a suite, resolved through the backend registry (``config.py`` stays plain data)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import RunOptions

if TYPE_CHECKING:  # pragma: no cover
    from ...backends.options import BackendOptions


def backend_options(options: RunOptions, backend: str) -> BackendOptions:
    """The typed options of ``backend`` (its registry row's options class) from the suite's ``backend_options``.

    Raises:
        KeyError: ``backend`` is not registered (the message lists the valid names).
    """
    from ...backends import backend_entry

    return backend_entry(backend).options.from_dict(options.backend_options.get(backend, {}))
