"""The ``native`` snapshotter: every snapshot is a full copy of its parent, mounted by bind."""
