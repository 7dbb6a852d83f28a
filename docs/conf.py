"""Sphinx configuration for the jaxnn documentation.

Build (from the repository root, warnings are errors):

    python -m sphinx -W -b html docs docs/_build/html

The tutorials are MyST markdown notebooks, executed on every build.
"""

import re

import jax

import jaxnn

# jax.Array reports its qualified name as "jaxlib._jax.Array"; show annotations as jax.Array.
jax.Array.__qualname__ = "Array"

project = "jaxnn"
author = "The jaxnn authors"
copyright = "2026, The jaxnn authors"
release = jaxnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from _static, so the maths renders without network
    "sphinx_copybutton",
]

# Sources are markdown (MyST), notebooks as MyST markdown, and reStructuredText for the API pages.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "jupyter_execute",
    ".venv",
    "**/.ipynb_checkpoints",
    "*.png",
    "Thumbs.db",
    ".DS_Store",
]

# MyST: $...$ and $$...$$ maths, ::: fences, and anchors for headings down to level 3.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
# Straight quotes everywhere: a message or a call copied from the page must stay valid Python.
smartquotes = False

# Notebooks: run every tutorial on every build; a failing cell fails the build.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 120  # seconds per cell
nb_execution_show_tb = True
nb_merge_streams = True

# API reference from the Google-style docstrings (Args / Returns / Raises).
autodoc_default_options = {"member-order": "bysource"}  # members are listed on each page
# Show jax.typing.ArrayLike by its name, not as the union it stands for.
autodoc_type_aliases = {"ArrayLike": "jax.typing.ArrayLike"}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields of the class, not separate entries

# No intersphinx: the documentation builds without network access.

html_theme = "furo"
html_title = f"jaxnn {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True


def _tidy_alias_refs(app, what, name, obj, options, signature, return_annotation):
    """Write an aliased type nested in another (``Callable[[ArrayLike], ...]``) by its name.

    Sphinx 9 records such types as ``TypeAliasForwardRef('jax.typing.ArrayLike')``.
    """
    annotations = app.env.current_document.autodoc_annotations.get(name, {})
    for key, value in annotations.items():
        annotations[key] = re.sub(r"TypeAliasForwardRef\('([^']*)'\)", r"\1", value)


def setup(app):
    # After autodoc's own handler (priority 500) has recorded the type hints.
    app.connect("autodoc-process-signature", _tidy_alias_refs, priority=600)
    # sphinx-mathjax-offline only copies MathJax's files once the build has finished, so reading the pages
    # (and executing the tutorials) in parallel with `sphinx -j` is safe; it does not say so itself.
    offline = app.extensions.get("sphinx-mathjax-offline")
    if offline is not None:
        offline.parallel_read_safe = True
