"""The metadata store: namespaced, transactional records of every containerd object, kept in
SQLite (:mod:`.db`), with the stores (:mod:`.namespaces`, :mod:`.images`, :mod:`.containers`,
:mod:`.leases`, :mod:`.sandboxes`) and the namespaced views over the content store and
snapshotters (:mod:`.content`, :mod:`.snapshots`). Garbage collection lives in
:mod:`pycontainerd.core.gc`."""
