"""Doctests of optional modules run only where their extra is installed."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("matplotlib") else ["jaxnn/plotting.py"]
