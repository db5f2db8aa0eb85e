"""The user's modules (``--import``): imported in each process before a registry is asked for a name.

A module registers its models, datasets, optimizers or trainables when imported, so the
driver, every trial process and every Slurm step import the same ones first.
"""

from __future__ import annotations

from stability.errors import UserError


def load_imports(imports) -> None:
    """Import each user module in this process: by path where the file is here, else the copy Ray
    shipped to this node. The model registry (and torch) is imported only when there is one."""
    if not imports:
        return
    from models import import_in_worker

    for spec in imports:
        try:
            import_in_worker(spec)
        except Exception as e:
            raise UserError(f"--import {spec}: {type(e).__name__}: {e}") from None
