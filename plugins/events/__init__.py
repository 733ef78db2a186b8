"""The event exchange plugin (``io.containerd.event.v1.exchange``)."""
