"""User errors: mistakes a user can fix, reported as one ``error:`` line with exit status 2."""


class UserError(Exception):
    """A bad flag, name, range, path or cluster address; the message names what to fix."""
