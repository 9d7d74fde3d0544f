"""Errors the station raises for things a user can fix.

    StationError                 -- anything the CLI reports as one line, exit code 2
     +-- SettingsError           -- a config file, environment variable or flag is wrong
     +-- AuthError               -- unknown operator, wrong secret, missing role
     +-- SourceError             -- a camera / video / folder / synthetic spec cannot be used
     |    +-- SourceLost         -- a live source stopped giving frames; reconnecting may help
     +-- ImageStoreError         -- the image store cannot be used (unwritable folder, bad hash)
     +-- ModelMismatch           -- a model's classes are not the station's labels
     +-- ModelRefused            -- other weights are registered under the model's name:version
     +-- LevelChangeRefused      -- no gate, no reason, no right, or the level moved meanwhile
     +-- SimulationRefused       -- `station simulate` asked to record into a real station
     +-- LineStopped             -- decisions cannot be saved anywhere (a full disk): none taken

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


class SourceLost(SourceError):
    """A live source stopped giving frames (camera unplugged, stream dropped); reconnect may help."""


class ImageStoreError(StationError):
    """The store cannot be used (unwritable folder, bad hash, unreadable file)."""


class ModelMismatch(StationError):
    """The model's classes are not the station's labels."""


class ModelRefused(StationError):
    """The record already holds other weights under this model's name and version."""


class LevelChangeRefused(StationError):
    pass


class SimulationRefused(StationError):
    pass


class LineStopped(StationError):
    """Neither the database nor the spool can take a decision: the station takes none."""
