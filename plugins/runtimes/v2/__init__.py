"""Runtime v2: shims started per task (or per group), spoken to over ttrpc, and the task
manager the tasks service uses (containerd ``core/runtime/v2``)."""
