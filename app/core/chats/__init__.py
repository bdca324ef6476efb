"""Conversations and their storage: the SQLite store, search, reply saving, export and import."""
