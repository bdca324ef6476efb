"""`hearth search QUERY` and `hearth pull REPO[:QUANT]`: the Hugging Face Hub from a terminal.

Both respect `HF_ENDPOINT`, `HF_HOME` (the stored token), `HF_TOKEN` and `HF_HUB_OFFLINE`
like every huggingface_hub tool.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

from app.cli.common import bounded_int, data_dir_options, open_paths

if TYPE_CHECKING:
    from app.core.models.download_types import DownloadProgress

_BAR_WIDTH = 28
_PIPE_INTERVAL_S = 3.0


def register(sub: Any) -> None:
    """Add the `search` and `pull` subcommands."""
    search = sub.add_parser(
        "search",
        parents=[data_dir_options()],
        help="search the Hugging Face Hub for GGUF models",
    )
    search.add_argument("query", help="words in the repo name, e.g. 'llama 3b'")
    search.add_argument(
        "--sort",
        choices=("downloads", "likes", "trending", "recent"),
        default="downloads",
        help="order of the results (default: downloads)",
    )
    search.add_argument(
        "--limit", type=bounded_int(1, 1000), default=20, metavar="N", help="at most N results"
    )
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    search.set_defaults(handler=run_search)

    pull = sub.add_parser(
        "pull",
        parents=[data_dir_options()],
        help="download a GGUF model from the Hub into the library",
        description=(
            "Download a GGUF model (all parts of a split one) into Hearth's models folder, "
            "verify its sha256 and print its path. Ctrl-C stops; the same command resumes. "
            "Uses HF_ENDPOINT, and the token in HF_TOKEN or $HF_HOME/token for gated repos."
        ),
    )
    pull.add_argument(
        "spec",
        metavar="REPO[:QUANT]",
        help="owner/repo (the recommended quant) or owner/repo:Q4_K_M",
    )
    pull.set_defaults(handler=run_pull)


def run_search(args: argparse.Namespace) -> int:
    """Print the matching GGUF repos as a table or JSON."""
    from app.core.models.hub import HubClient
    from app.core.units import format_params

    open_paths(args)
    models = HubClient().search(args.query, sort=args.sort, limit=args.limit)
    if args.json:
        print(json.dumps([asdict(m) for m in models], indent=2))
        return 0
    if not models:
        print(f"No GGUF models match '{args.query}'.", file=sys.stderr)
        return 0
    width = max(len(m.repo_id) for m in models)
    print(f"{'REPO':<{width}}  {'DOWNLOADS':>9}  {'LIKES':>6}  {'PARAMS':>7}  ARCH      LICENCE")
    for m in models:
        gated = "  (gated)" if m.gated else ""
        params = format_params(m.n_params, "-")
        print(
            f"{m.repo_id:<{width}}  {m.downloads:>9}  {m.likes:>6}  {params:>7}  "
            f"{m.architecture or '-':<8}  {m.licence or '-'}{gated}"
        )
    return 0


def run_pull(args: argparse.Namespace) -> int:
    """Download the model with a progress bar on stderr; print its path when verified."""
    from app.core.models.download import pull

    paths = open_paths(args)
    bar = ProgressBar(sys.stderr)
    try:
        path = pull(paths, args.spec, progress=bar.update)
    except KeyboardInterrupt:
        bar.finish()
        print("hearth: stopped; run the same command again to resume.", file=sys.stderr)
        return 130
    finally:
        bar.finish()
    print(path)
    return 0


class ProgressBar:
    """One self-rewriting line: bar, percent, bytes, speed and time left.

    On a terminal the line is redrawn at every report (at most ~10 a second); into a file
    or a pipe a line is written per phase and every few seconds.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._open = False
        self._interactive = stream.isatty()
        self._last_phase = ""
        self._last_line = 0.0

    def update(self, progress: DownloadProgress) -> None:
        from app.core.units import format_bytes

        now = time.monotonic()
        if not self._interactive:
            retrying = progress.phase == "retrying"
            same = progress.phase == self._last_phase and not retrying
            if same and now - self._last_line < _PIPE_INTERVAL_S:
                return
            self._last_phase, self._last_line = progress.phase, now
        total = max(progress.total_bytes, 1)
        fraction = min(progress.done_bytes / total, 1.0)
        filled = int(fraction * _BAR_WIDTH)
        eta = _duration(progress.eta_seconds) if progress.eta_seconds is not None else "--:--"
        label = str(progress.phase)
        if progress.phase == "retrying":
            label = f"retrying ({progress.retry}/{progress.retries})"
        line = (
            f"{label:<15} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] "
            f"{fraction * 100:5.1f}%  {format_bytes(progress.done_bytes)}/"
            f"{format_bytes(progress.total_bytes)}  "
            f"{format_bytes(int(progress.bytes_per_second))}/s  ETA {eta}  "
        )
        if self._interactive:
            self._stream.write("\r" + line)
            self._open = True
        else:
            self._stream.write(line.rstrip() + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the line so later messages start on their own."""
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
