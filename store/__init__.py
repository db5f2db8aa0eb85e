"""The results store: the one schema of a trial row, its metric and protocol (``schema``), a
sweep's stored search space (``space``), the user-error type (``errors``), and the one reader
and writer of its files (``files``).

Imports neither torch nor Ray: the sweep engine writes through it and the analysis reads
through it, on a laptop with a copied results folder as well. The file layer (pandas) loads
on first use, so that importing the user-error type (``store.errors``) stays free.
"""

from __future__ import annotations

from importlib import import_module

from store.errors import UserError

FILES = ("Store", "check_name", "inside", "read_trial_files", "set_aside")
__all__ = ["UserError", *FILES]


def __getattr__(name: str):
    if name in FILES:
        return getattr(import_module("store.files"), name)
    raise AttributeError(f"module 'store' has no attribute {name!r}")
