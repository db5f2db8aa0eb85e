"""User errors: the one ``UserError`` class, defined in ``store.errors`` (see there why)."""

from store.errors import UserError

__all__ = ["UserError"]
