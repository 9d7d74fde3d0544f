"""The inspector's window (PySide6): a thin view on station.pipeline.core.StationCore."""
