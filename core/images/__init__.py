"""Image objects: media types (and, later, the image store contract and helpers)."""
