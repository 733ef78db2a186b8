"""``containerd-shim-pyrunc-v2``, the runtime v2 shim for ``io.containerd.pyrunc.v2``.

- :mod:`.main`: the command line (``start``, ``delete``, serve) and grouping/socket logic;
  imports stay light so ``start`` and ``delete`` answer fast.
- :mod:`.server`: the serving process: ttrpc on fd 3, task API v2 and v3, signals, exit.
- :mod:`.service`: the task service (containers of one group, their init and exec processes).
- :mod:`.reaper`: child subreaper, ``waitpid(-1)`` on SIGCHLD, asyncio's child watcher.
- :mod:`.publisher`: ordered events to ``TTRPC_ADDRESS`` (Events/Forward) or the publish binary.
- :mod:`.stdio`: FIFOs, pipes and terminals for container processes.
- :mod:`.oom`: cgroup v1 OOM notifications; :mod:`.metrics`: cgroup v1 stats as containerd's
  ``io.containerd.cgroups.v1.Metrics``; :mod:`.bundle`: files the shim keeps in a bundle.

runc itself is driven through :mod:`pycontainerd.core.runc`.
"""
