"""User errors: mistakes a user can fix, reported as one ``error:`` line with exit status 2.

Defined here, in the lowest layer that every other package may import (the store needs
neither torch nor Ray), so that the store can refuse a bad name or folder without importing
the trainer; ``stability.errors`` names the same class for the layers above.
"""


class UserError(Exception):
    """A bad flag, name, range, path or cluster address; the message names what to fix."""
