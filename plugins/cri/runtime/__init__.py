"""The CRI runtime configuration plugin (``io.containerd.cri.v1.runtime``)."""
