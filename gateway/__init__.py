"""sinkwatch gateway: edge daemon, central service, shared data model and (later) flux science."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sinkwatch")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
