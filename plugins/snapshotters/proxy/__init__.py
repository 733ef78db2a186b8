"""Proxy snapshotters: ``[proxy_plugins.<name>]`` entries of type ``snapshot`` become
``io.containerd.snapshotter.v1.<name>`` plugins reached over the snapshots gRPC API."""
