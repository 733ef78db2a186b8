"""The CRI plugin: runtime and image services for kubelet, served beside containerd's API."""
