"""The version of jaxnn, read by pyproject.toml and re-exported as ``jaxnn.__version__``."""

__version__ = "0.3.0"
