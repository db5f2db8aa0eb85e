"""Pure functions on results-store DataFrames: EDFs, gaps, deltas, statistics and figures.

Never imports torch or Ray, so it works on a laptop with a copied results folder.
"""
