"""CRI pod sandboxes (containerd's ``internal/cri/server/sandbox_*.go`` and
``internal/cri/store/sandbox``): the in-memory sandbox store with its name index, the state
model, conversion to CRI messages, the RunPodSandbox/Stop/Remove/Status/List logic
(:mod:`.service`), its RPC handlers (:mod:`.handlers`) and recovery after a restart.

The pause container itself is the pod sandbox controller's business
(:mod:`pycontainerd.plugins.cri.podsandbox`).
"""
