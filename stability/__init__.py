"""The shared trainer (the paper's recipe) and the ``stability`` command line.

Kept free of heavy imports so that ``stability --help`` and user-error paths answer at once.
"""
