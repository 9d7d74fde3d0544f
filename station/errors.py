"""Errors the station raises for things a user can fix.

    StationError                 -- anything the CLI reports as one line, exit code 2
     +-- SettingsError           -- a config file, environment variable or flag is wrong
     +-- AuthError               -- unknown operator, wrong secret, missing role
     +-- SourceError             -- a camera / video / folder / synthetic spec cannot be used

db, model and review have hierarchies of their own (db.errors, model.errors, review.errors);
the CLI catches all four at its top level.
"""

from __future__ import annotations


class StationError(Exception):
    """A problem the user can fix; its message says what was expected and what was found."""


class SettingsError(StationError):
    pass


class AuthError(StationError):
    pass


class SourceError(StationError):
    pass
