"""The database of record: tables, the engine factory, migrations and repository functions."""
