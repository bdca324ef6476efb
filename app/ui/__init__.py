"""Qt widgets: what the person sees and touches."""
