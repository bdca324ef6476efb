"""`python -m app` runs the same entry point as the `hearth` command."""

import multiprocessing

# First, before anything else runs: in a frozen app, a spawned child process (the quantizer
# runs llama.cpp in one) re-enters this entry point, and freeze_support turns it into the
# child's worker instead of a second copy of Hearth. A no-op otherwise.
multiprocessing.freeze_support()

import sys  # noqa: E402

from app.cli import main  # noqa: E402

sys.exit(main())
