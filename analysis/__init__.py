"""Pure functions on results-store DataFrames: the store read as tables (``loading``), EDFs,
gaps and deltas (``experiments``), statistics (``stats``), importance, figures (``figures``),
the files of ``stability figures`` (``figure_files``), the page of ``stability report``
(``report``), the laptop study's claims (``claims``) and a grid's centre (``centring``).

Never imports torch or Ray, so it works on a laptop with a copied results folder.
"""

from analysis.experiments import comparisons, noise_floors  # noqa: F401
from analysis.importance import importance  # noqa: F401
from analysis.loading import load_curves, load_trials  # noqa: F401
from analysis.stats import compare, compare_summaries, edf, expected_best, holm, summarize  # noqa: F401
