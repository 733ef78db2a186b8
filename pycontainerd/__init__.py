"""pycontainerd: containerd's architecture in Python."""

__version__ = "0.1.0"
#: The containerd API version we speak on the wire (what `ctr version` compares against).
__revision__ = ""
