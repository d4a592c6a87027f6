"""The package version, in a module of its own so that any layer can read it without importing
the package root (which imports most of the library). tests/test_import_direction.py keeps
pyproject.toml's ``version`` equal to it."""

__version__ = "0.1.0"
