"""``pyctr``: a ctr-like client for pycontainerd (and containerd)."""
