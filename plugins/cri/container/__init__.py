"""CRI containers (containerd's ``internal/cri/server/container_*.go`` and
``internal/cri/store/container``).

- :mod:`.store`: the in-memory container store, name index, status checkpoint on disk.
- :mod:`.spec`: the OCI spec of a container from image config + ``ContainerConfig`` + sandbox.
- :mod:`.seccomp`: the built-in ``runtime/default`` seccomp profile.
- :mod:`.service`: :class:`~.service.ContainerManager`: create/start/stop/remove, exit
  monitor, events, exec-sync, stats, recovery; ``stop_all``/``remove_all`` for the pod code.
- :mod:`.handlers`: the RuntimeService RPC handlers (CreateContainer ... GetContainerEvents).
"""
