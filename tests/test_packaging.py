"""Packaging: one version everywhere, the licence and the typing marker ship with the package."""

import importlib.metadata
import pathlib

import jaxnn

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_version_matches_installed_metadata():
    assert jaxnn.__version__ == importlib.metadata.version("jaxnn")


def test_license_file_exists():
    text = (ROOT / "LICENSE").read_text()
    assert "MIT License" in text
    assert "The jaxnn authors" in text


def test_py_typed_marker_sits_in_the_package():
    assert (pathlib.Path(jaxnn.__file__).parent / "py.typed").is_file()


def test_license_shows_in_the_metadata_pip_reads():
    # `pip show` (before pip 25.1) prints the "License" field only; setup.cfg sets it.
    assert importlib.metadata.metadata("jaxnn")["License"] == "MIT"
