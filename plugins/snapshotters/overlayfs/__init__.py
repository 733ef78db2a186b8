"""The ``overlayfs`` snapshotter: layers stacked by the kernel's overlay filesystem."""
