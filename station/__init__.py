"""Inspection Station: the inspector's pipeline (frames in, routing, recording) and its window."""
