"""Snapshots: the local service (``io.containerd.service.v1.snapshots-service``, the metadata
namespaced snapshotters by name) and its gRPC front-end (``io.containerd.grpc.v1.snapshots``)."""
