"""Pure functions on results-store DataFrames: EDFs, gaps, deltas, statistics and figures.

Never imports torch or Ray, so it works on a laptop with a copied results folder.
"""

from analysis.experiments import comparisons, noise_floors
from analysis.importance import importance
from analysis.loading import load_curves, load_manifests, load_trials
from analysis.stats import compare, compare_summaries, edf, expected_best, holm, summarize

__all__ = [
    "compare",
    "compare_summaries",
    "comparisons",
    "edf",
    "expected_best",
    "holm",
    "importance",
    "load_curves",
    "load_manifests",
    "load_trials",
    "noise_floors",
    "summarize",
]
