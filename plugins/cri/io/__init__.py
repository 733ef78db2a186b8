"""Container IO for the CRI (containerd's ``internal/cri/io``): FIFO sets per container and
exec, the copy of a container's output into its CRI log file (:mod:`.logger`) and to attached
clients (:mod:`.container_io`)."""
