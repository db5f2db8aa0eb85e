"""The one shared trainer (the paper's recipe) and what it trains with: data and the dataset
registry, optimizers and their registry, populations (several trials as one batched model),
Ray-free data-parallel helpers, and trainables (a researcher's own training function) and
their registry (docs/design.md, "Packages").

Kept free of heavy imports: the user-error type (``stability.errors``) and the paper's numbers
(``stability.paper``) load without torch, for the command line's fast refusals.
"""
