"""The one source of pinclient's version (read by pyproject.toml and ``--version``)."""

__version__ = "0.1.0"
