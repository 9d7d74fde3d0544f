"""Errors the defect model raises for things a user can fix.

    ModelError                   -- anything the CLI reports as one line, exit code 2
     +-- DataError               -- a training / evaluation folder cannot be used
     +-- UnknownArchitecture     -- no architecture of that name
     +-- BadImage                -- an image of the wrong kind (dtype, channels, size)
     +-- CalibrationError        -- calibration was fed something that is not logits
     +-- ArtifactError           -- a model folder cannot be loaded
          +-- TamperedArtifact   -- a file's sha256 differs from the manifest, or files were added
          +-- PickledModel       -- the weights hold pickled objects (a full model), refused

Callers catch at the level they need: the station falls back to a human on any ModelError.
"""

from __future__ import annotations


class ModelError(Exception):
    """A problem the user can fix; its message says what was expected and what was found."""


class DataError(ModelError):
    pass


class UnknownArchitecture(ModelError):
    pass


class BadImage(ModelError):
    pass


class CalibrationError(ModelError):
    pass


class ArtifactError(ModelError):
    pass


class TamperedArtifact(ArtifactError):
    pass


class PickledModel(ArtifactError):
    pass
