"""Entry point of the bundled app: PyInstaller runs this file as `__main__`."""

import multiprocessing

# First, before anything else: the quantizer runs llama.cpp in a spawn-context child
# process, which in a frozen app starts this same executable; freeze_support makes that
# child run its task instead of a second Hearth.
multiprocessing.freeze_support()

import os  # noqa: E402
import sys  # noqa: E402

# A windowed executable (Windows `hearth.exe`, the macOS .app) has no stdout or stderr:
# give print() and logging somewhere harmless to write instead of None.
for _stream in ("stdout", "stderr"):
    if getattr(sys, _stream) is None:
        setattr(sys, _stream, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115

from app.cli import main  # noqa: E402

sys.exit(main())
