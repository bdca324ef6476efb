"""The log file on a real full disk and a real read-only disk: one line, never tracebacks."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.mounts import fill_disk, remount, tiny_tmpfs

REPO = Path(__file__).resolve().parents[2]


def run_logging(log_dir: Path, records: int = 300) -> subprocess.CompletedProcess[str]:
    """Log `records` lines through `setup_logging` in a fresh process (a real root logger)."""
    script = textwrap.dedent(
        f"""
        import logging
        from pathlib import Path
        from app.core.logs import setup_logging
        print(setup_logging(Path({str(log_dir)!r})))
        log = logging.getLogger("hearth.test")
        for n in range({records}):
            log.info("record %d %s", n, "x" * 200)
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_a_log_on_a_full_disk_says_so_once_and_resumes_when_there_is_room(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "512k") as disk:
        logs = disk / "logs"
        logs.mkdir()
        (logs / "hearth.log").write_text("")
        filler = fill_disk(disk)
        done = run_logging(logs)
        assert done.returncode == 0, done.stderr
        lines = done.stderr.splitlines()
        assert lines == [
            f"hearth: note: cannot write the log {logs / 'hearth.log'} "
            "(No space left on device); going on without it"
        ]

        filler.unlink()
        again = run_logging(logs, records=3)
        assert again.stderr == ""
        assert "record 2 " in (logs / "hearth.log").read_text(encoding="utf-8")


def test_a_read_only_log_folder_moves_the_log_to_the_temporary_folder(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "512k") as disk:
        logs = disk / "logs"
        logs.mkdir()
        remount(disk, read_only=True)
        try:
            done = run_logging(logs, records=3)
        finally:
            remount(disk, read_only=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    used = Path(done.stdout.strip())
    assert used.name == "hearth.log" and used.parent.name.startswith("hearth-logs-")
    text = used.read_text(encoding="utf-8")
    assert f"cannot write the log in {logs}" in text and "record 2 " in text


def test_the_quiet_handler_counts_failures_instead_of_printing_tracebacks(
    tmp_path: Path,
) -> None:
    from app.core.logs import QuietFileHandler

    handler = QuietFileHandler(tmp_path / "x.log", delay=True)
    (tmp_path / "x.log").mkdir()  # a folder where the file should be: every open fails
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
    for _ in range(5):
        handler.emit(record)
    assert handler.failures == 5
    handler.close()
