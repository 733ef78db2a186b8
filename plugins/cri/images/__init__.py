"""The CRI image service (``io.containerd.cri.v1.images``): pulls through the transfer service,
the CRI image index over the ``k8s.io`` image records, and image filesystem usage."""
