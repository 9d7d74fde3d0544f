"""Errors of the review package (statistics, gates, reports).

    ReviewError                  -- anything the CLI reports as one line, exit code 2
     +-- FilterError             -- a report filter is malformed (unknown level, bad date, since > until)
     +-- GateRuleError           -- gate rules are missing a field or hold an impossible value
     +-- UnknownLevel            -- a level name that is not on the ladder
     +-- ReportFormatError       -- an output format that the report cannot write
     +-- AdjudicationRefused     -- not a qa_lead, or a label / reason / item that cannot be recorded
     +-- LabelError              -- a label set that cannot work (empty, duplicated, too many keys)
     +-- HeatmapUnavailable      -- no heat-map for an item here: no prediction, or its model's
                                    artifact missing, other or unreadable on this machine

Empty data is not an error: a report over nothing says so in the report itself.
"""

from __future__ import annotations


class ReviewError(Exception):
    """A problem the user can fix; the message says what was expected and what was found."""


class FilterError(ReviewError):
    pass


class GateRuleError(ReviewError):
    pass


class UnknownLevel(ReviewError):
    pass


class ReportFormatError(ReviewError):
    pass


class AdjudicationRefused(ReviewError):
    """The operator may not adjudicate, or the label / reason / item is not acceptable."""


class LabelError(ReviewError):
    pass


class HeatmapUnavailable(ReviewError):
    """The item's heat-map cannot be drawn here; the message is the short reason the window shows."""
