"""Pure functions on results-store DataFrames: EDFs, gaps, deltas, statistics and figures.

Never imports torch or Ray, so it works on a laptop with a copied results folder.
"""

from analysis.store import load_curves, load_manifests, load_trials

__all__ = ["load_curves", "load_manifests", "load_trials"]
