"""The one shared trainer (the paper's recipe): a run's configuration (``config``), its data
stream (``stream``), the training loop (``trainer``) and the checkpoint format (``checkpoint``).
And what it trains with: data and the dataset registry, optimizers and their registry,
populations (several trials as one batched model), Ray-free data-parallel helpers, trainables
(a researcher's own training function) and their registry, and the import of a user's modules
that register into them (``imports``) (docs/design.md, "Packages").

Kept free of heavy imports: the user-error type (``stability.errors``), the paper's numbers
(``stability.paper``) and ``stability.imports`` load without torch, for the command line's
fast refusals.
"""
