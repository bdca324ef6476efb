"""The chat column: the streamed conversation view, Markdown rendering, the composer."""
