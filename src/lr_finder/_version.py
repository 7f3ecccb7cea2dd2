"""The package version, read from the installed distribution's metadata (pyproject.toml is the one place
it is written), in a module of its own so that any layer can read it without importing the package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lr-finder")
except PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"
