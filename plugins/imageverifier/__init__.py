"""Image verifier plugins (``io.containerd.image-verifier.v1``)."""
