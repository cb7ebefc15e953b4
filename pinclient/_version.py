"""The one source of pinclient's version (read by pyproject.toml and ``--version``) and of the
User-Agent every request pinclient makes carries (a purpose may be appended in parentheses)."""

__version__ = "0.1.0"
USER_AGENT = f"pinclient/{__version__}"
