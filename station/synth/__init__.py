"""The synthetic phone line: rendered phones with known defects (and masks), its frame source,
a still exporter for training data, and simulated inspectors. Qt-free."""

from station.synth.config import DEFECT_CLASSES, LABELS, OK, SynthConfig
from station.synth.export import export_dataset
from station.synth.inspectors import SimulatedInspector
from station.synth.line import SyntheticLine, SyntheticLineSource
from station.synth.render import SyntheticItem, item_label, render_item

__all__ = [
    "DEFECT_CLASSES",
    "LABELS",
    "OK",
    "SimulatedInspector",
    "SynthConfig",
    "SyntheticItem",
    "SyntheticLine",
    "SyntheticLineSource",
    "export_dataset",
    "item_label",
    "render_item",
]
