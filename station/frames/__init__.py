"""Frames in: sources (camera, video, stream, folder, synthetic line), threaded capture, the item
trigger, the content-addressed image store and input statistics. Qt-free."""

from station.errors import ImageStoreError, SourceLost
from station.frames.capture import Backoff, Capture, CaptureCounts
from station.frames.sources import (
    ACCEPTED_FORMS,
    ImageFolderSource,
    ListSource,
    OpenCVSource,
    SourceSpec,
    open_source,
    parse_source_spec,
)
from station.frames.stats import InputStats, compute_stats
from station.frames.store import ImageStore, StoredImage, encode_image
from station.frames.trigger import (
    TRIGGER_VERSION,
    CapturedItem,
    Trigger,
    TriggerConfig,
    TriggerState,
    item_from_frame,
)
from station.frames.types import CaptureState, Frame, FrameSource, SkippedFile

__all__ = [
    "ACCEPTED_FORMS",
    "TRIGGER_VERSION",
    "Backoff",
    "Capture",
    "CaptureCounts",
    "CaptureState",
    "CapturedItem",
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "ImageStore",
    "ImageStoreError",
    "InputStats",
    "ListSource",
    "OpenCVSource",
    "SkippedFile",
    "SourceLost",
    "SourceSpec",
    "StoredImage",
    "Trigger",
    "TriggerConfig",
    "TriggerState",
    "compute_stats",
    "encode_image",
    "item_from_frame",
    "open_source",
    "parse_source_spec",
]
