"""The walking differ (``io.containerd.differ.v1.walking``): applies layers from the content
store onto mounts and computes layers by walking two mounted trees."""
