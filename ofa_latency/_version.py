"""The package version (its one home; setup.cfg reads it)."""

__version__ = "0.1.0"
