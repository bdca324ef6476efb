"""Model files: the library on disk, the catalog, the Hub, downloads, quantizing."""
