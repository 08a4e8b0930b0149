"""``python -m tlbench`` is the ``tlbench`` console script."""

from .benchmarks.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
