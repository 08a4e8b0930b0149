"""Benchmarks: strategies, runner, timing, metrics, results, report and the ``tlbench`` CLI.

Nothing in this package imports a deep-learning framework; backends do, lazily.
"""
