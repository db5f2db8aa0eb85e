"""The ``stability`` command line: the top layer, above models, the trainer, the sweep engine,
the store and the analysis. Nothing imports it (tests/test_layers.py)."""

from cli.main import main

__all__ = ["main"]
