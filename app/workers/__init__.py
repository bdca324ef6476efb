"""QObjects that run core work on worker threads and report through Qt signals."""
