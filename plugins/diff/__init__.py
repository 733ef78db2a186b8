"""Differ plugins (``io.containerd.differ.v1``)."""
