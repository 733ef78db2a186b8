"""Diff: the local service (``io.containerd.service.v1.diff-service``, differs in configured
order) and its gRPC front-end (``io.containerd.grpc.v1.diff``)."""
