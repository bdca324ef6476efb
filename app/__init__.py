"""Hearth: private, offline chat with local open-weight language models."""

__version__ = "0.1.0"
