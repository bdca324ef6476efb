"""`hearth doctor`: what llama.cpp was built with and sees, whether it can use the GPU, and
whether the window can open (Qt's platform plugin and the libraries it lacks)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from app.cli.common import data_dir_options, open_paths


def register(sub: Any) -> None:
    """Add the `doctor` subcommand."""
    cmd = sub.add_parser(
        "doctor",
        parents=[data_dir_options()],
        help="show what llama.cpp sees, whether it can use the GPU, and whether the window "
        "can open",
    )
    cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the machine report, the verdict on GPU use and the GUI's readiness."""
    from app.core.machine.doctor import diagnose, report_lines
    from app.core.machine.gui_readiness import check_gui
    from app.core.machine.hardware import machine_report

    open_paths(args)
    report = machine_report()
    diagnosis = diagnose(report)
    gui = check_gui()
    if args.json:
        payload = {**report.to_dict(), "diagnosis": diagnosis.to_dict(), "gui": gui.to_dict()}
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(report_lines(report, diagnosis, gui)))
    return 0
