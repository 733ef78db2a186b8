"""The tasks service: ``io.containerd.service.v1.tasks-service`` (local) and
``io.containerd.grpc.v1.tasks`` (``containerd.services.tasks.v1.Tasks`` over gRPC)."""
