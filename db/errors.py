"""Errors of the database layer.

DbError                      -- anything wrong with the database of record
 +-- DatabaseUrlError        -- the URL is malformed or names an unsupported backend
 +-- DatabaseUnavailable     -- the server or file cannot be reached / opened / written
 +-- NotADatabase            -- the file exists but is not a SQLite database
 +-- SchemaError             -- the schema is newer than this program, or differs from the models
 +-- CorruptDatabase         -- SQLite's integrity check fails: restore the last good backup
 +-- IntegrityProblem        -- a record would break a rule (duplicate name, missing parent)
"""

from __future__ import annotations


class DbError(Exception):
    """A database problem the user can act on; the message says what was expected."""


class DatabaseUrlError(DbError):
    pass


class DatabaseUnavailable(DbError):
    pass


class NotADatabase(DbError):
    pass


class SchemaError(DbError):
    pass


class CorruptDatabase(DbError):
    pass


class IntegrityProblem(DbError):
    pass
