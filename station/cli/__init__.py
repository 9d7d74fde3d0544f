"""The `station` command: one entry point, one subcommand module per capability.

Each module in COMMAND_MODULES exposes `register(app)`; only working commands are listed, so
`station --help` never offers something that does not work.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from station.cli.common import run_guarded

COMMAND_MODULES = [
    "station.cli.config_cmd",
    "station.cli.db_cmd",
    "station.cli.audit_cmd",
    "station.cli.monitor_cmd",
    "station.cli.model_cmd",
    "station.cli.report_cmd",
    "station.cli.review_cmd",
    "station.cli.user_cmd",
    "station.cli.level_cmd",
    "station.cli.thresholds_cmd",
    "station.cli.golden_cmd",
    "station.cli.dataset_cmd",
    "station.cli.teach_cmd",
    "station.cli.synth_cmd",
    "station.cli.capture_cmd",
    "station.cli.simulate_cmd",
    "station.cli.run_cmd",
]

app = typer.Typer(
    name="station",
    help="Inspection Station: inspect phones by eye, with a defect model brought in safely.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(run_guarded(app))
