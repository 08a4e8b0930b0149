"""Core: framework-free data that every other layer reads — strategies as rows, the training plan, cell kinds.

Imports nothing outside ``tlbench.core`` (and the standard library): backends, running, reporting and the command
line build on it, never the other way round (``tests/test_layers.py`` walks the imports).
"""
