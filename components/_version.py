"""The package version: image tags and every lineage record derive from it."""

__version__ = "0.1.0"
