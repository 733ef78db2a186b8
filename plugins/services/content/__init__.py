"""Content: the local service (``io.containerd.service.v1.content-service``) over the metadata
namespaced content store, and its gRPC front-end (``io.containerd.grpc.v1.content``)."""
