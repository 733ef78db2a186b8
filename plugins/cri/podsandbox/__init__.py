"""The ``podsandbox`` pod sandbox controller (``io.containerd.podsandbox.controller.v1``): a pod
sandbox as a pause container (:mod:`.controller`), its OCI spec (:mod:`.spec`) and its files
(:mod:`.files`)."""
