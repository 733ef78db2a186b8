"""An example third-party pycontainerd plugin package."""

__version__ = "0.1.0"
