"""The package version, in one place: setuptools reads it from here for the build."""

__all__ = ["__version__"]

__version__ = "0.2.0"
