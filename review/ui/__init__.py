"""The QA lead's review window (Qt); its data comes from review.browse, which has no Qt."""

from review.ui.window import ReviewConfig, ReviewWindow, Selection, run

__all__ = ["ReviewConfig", "ReviewWindow", "Selection", "run"]
