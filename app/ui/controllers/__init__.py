"""GUI-thread controllers: each holds the state of one concern and reports by signals.

They never import each other; what they share lives in `state.ChatState`, and the main
window connects their signals.
"""
