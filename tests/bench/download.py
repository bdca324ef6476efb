"""Download benchmark: ours vs a plain HTTP GET of the same file, alternated in one run.

    python -m tests.bench.download [--size-mb 150] [--rounds 5]

The fake Hub (tests/fake_hub.py) serves a file of random bytes from a child process on
loopback. Each round downloads it once with `download_model_file` (HEAD for the metadata,
ranged-capable GET through huggingface_hub's shared client, sha256 while writing, verify,
atomic move, provenance) and once with a bare `httpx2` GET written to a file, in
alternating order. Prints the medians and the paired ratio (target >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from huggingface_hub import constants

from app.core.models.download import download_model_file
from app.core.models.download_files import CHUNK_SIZE
from app.core.models.download_types import DownloadRequest
from app.core.paths import app_paths

REPO = "bench/random-GGUF"
FILE = "bench-Q4_K_M.gguf"


def ours(endpoint: str, root: Path) -> tuple[float, int]:
    paths = app_paths(root).ensure()
    started = time.perf_counter()
    path = download_model_file(paths, DownloadRequest(REPO, FILE, endpoint=endpoint))
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    shutil.rmtree(root)
    return seconds, size


def plain_get(client: httpx2.Client, endpoint: str, root: Path) -> tuple[float, int]:
    root.mkdir(parents=True)
    target = root / FILE
    started = time.perf_counter()
    with (
        client.stream("GET", f"{endpoint}/{REPO}/resolve/main/{FILE}") as response,
        open(target, "wb") as file,
    ):
        response.raise_for_status()
        for chunk in response.iter_bytes(CHUNK_SIZE):
            file.write(chunk)
    seconds = time.perf_counter() - started
    size = target.stat().st_size
    shutil.rmtree(root)
    return seconds, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    constants.HF_HUB_OFFLINE = False
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_hub", "--size-mb", str(args.size_mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    endpoint = server.stdout.readline().strip()
    scratch = Path(tempfile.mkdtemp(prefix="hearth-bench-download-"))
    ours_mbps: list[float] = []
    plain_mbps: list[float] = []
    try:
        with httpx2.Client(follow_redirects=True, timeout=60) as client:
            ours(endpoint, scratch / "warm-ours")  # warm-up both (page cache, connections)
            plain_get(client, endpoint, scratch / "warm-plain")
            for index in range(args.rounds):
                runs = [("ours", ours_mbps), ("plain", plain_mbps)]
                for name, results in runs if index % 2 == 0 else runs[::-1]:
                    folder = scratch / f"{name}-{index}"
                    if name == "ours":
                        seconds, size = ours(endpoint, folder)
                    else:
                        seconds, size = plain_get(client, endpoint, folder)
                    results.append(size / seconds / 1e6)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    ratios = [o / p for o, p in zip(ours_mbps, plain_mbps, strict=True)]
    print(
        f"file {args.size_mb} MB over loopback, {args.rounds} rounds, alternated, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"  download MB/s     ours {statistics.median(ours_mbps):8.1f}   "
        f"plain GET {statistics.median(plain_mbps):8.1f}   "
        f"ratio {statistics.median(ratios):5.3f} (paired median; range "
        f"{min(ratios):.3f}-{max(ratios):.3f})  (target >= 0.9)"
    )
    print("  ours: HEAD + GET + sha256 + verify + atomic move + provenance; plain: GET to file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
