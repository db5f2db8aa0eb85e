"""Optuna storages named by a URL or a journal file, opened for import (never created) and export."""

from __future__ import annotations

import contextlib
from pathlib import Path

from external.source import one_line
from store.errors import UserError
from store.space import quiet_optuna

SQLITE_MAGIC = b"SQLite format 3\x00"


def journal_path(url: str) -> Path | None:
    """The journal file a storage URL names, or None for a database URL (see the module's doc)."""
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if "://" in url:
        return None
    path = Path(url)
    with contextlib.suppress(OSError), path.open("rb") as f:
        if f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
            return None
    return path


def storage_url(url: str) -> str:
    """The URL Optuna opens: a plain path to an SQLite file as ``sqlite:///``."""
    return url if "://" in url or journal_path(url) is not None else f"sqlite:///{Path(url).resolve()}"


def open_storage(url: str, *, create: bool):
    """An Optuna storage for ``url``; without ``create`` a file it names must exist (import never
    creates a database or a journal)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = journal_path(url)
    if path is None:
        url = storage_url(url)
        sqlite = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
        if not create and sqlite not in (None, "", ":memory:") and not Path(sqlite).is_file():
            raise UserError(f"no Optuna database {sqlite} (from {url!r})")
    elif not create and not path.is_file():
        raise UserError(f"no Optuna journal file {path}")
    try:
        with quiet_optuna():
            if path is not None:
                return JournalStorage(JournalFileBackend(str(path)))
            return optuna.storages.RDBStorage(url, skip_table_creation=not create)  # import writes nothing
    except Exception as e:  # a bad URL, a missing driver, an unreadable file: all the user's to fix
        raise UserError(f"cannot open Optuna storage {url!r}: {one_line(e)}") from None
