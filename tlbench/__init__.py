"""tlbench: compare transfer-learning strategies and frameworks for image classification.

The code lives in three top-level folders of the repository, mapped onto this namespace by
``pyproject.toml``: ``tlbench.backends`` (the framework-free ``Backend`` contract and one module per
framework), ``tlbench.benchmarks`` (strategies, runner, timing, metrics, results, report, CLI) and
``tlbench.datasets`` (loaders that turn every source into cached uint8 arrays).
"""

__version__ = "0.1.0"
