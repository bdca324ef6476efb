"""`hearth doctor`: what llama.cpp was built with and sees, and whether it can use the GPU."""

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
        help="show what llama.cpp sees on this machine and whether it can use the GPU",
    )
    cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    cmd.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the machine report and the verdict on GPU use."""
    from app.core.machine.doctor import diagnose, report_lines
    from app.core.machine.hardware import machine_report

    open_paths(args)
    report = machine_report()
    diagnosis = diagnose(report)
    if args.json:
        print(json.dumps({**report.to_dict(), "diagnosis": diagnosis.to_dict()}, indent=2))
    else:
        print("\n".join(report_lines(report, diagnosis)))
    return 0
