"""The results store: the one schema of a trial row and the one reader and writer of its files.

Imports neither torch nor Ray: the sweep engine writes through it and the analysis reads
through it, on a laptop with a copied results folder as well.
"""

from store.errors import UserError
from store.files import Store, check_name, inside, read_trial_files, set_aside

__all__ = ["Store", "UserError", "check_name", "inside", "read_trial_files", "set_aside"]
