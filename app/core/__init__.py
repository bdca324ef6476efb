"""Plain-Python core of Hearth: no Qt here, everything a headless user needs."""
