"""Names the CRI plugin shares with containerd's (``internal/cri/{constants,labels,annotations}``):
kubelet, crictl and ``ctr -n k8s.io`` users see them."""

from __future__ import annotations

#: The containerd namespace every CRI object lives in.
K8S_NAMESPACE = "k8s.io"
#: The CRI API version exported by ``io.containerd.cri.v1.runtime`` (``CRIVersion``).
CRI_VERSION = "v1"
#: What ``Version`` reports as the runtime API version.
RUNTIME_API_VERSION = "v1"
#: What ``Version`` reports as the runtime name (containerd says "containerd").
RUNTIME_NAME = "pycontainerd"
#: The CRI version field (kubelet only shows it).
KUBE_API_VERSION = "0.1.0"

#: Marks an image record as managed by the CRI plugin.
IMAGE_LABEL_KEY = "io.cri-containerd.image"
IMAGE_LABEL_VALUE = "managed"
#: Marks an image record of a pinned image (``pinned_images``); kubelet never collects it.
PINNED_IMAGE_LABEL_KEY = "io.cri-containerd.pinned"
PINNED_IMAGE_LABEL_VALUE = "pinned"

#: Deprecated sandbox-config annotation naming the runtime handler of a pull.
ANNOTATION_RUNTIME_HANDLER = "io.containerd.cri.runtime-handler"

#: Runtime condition types (cri-api) and containerd's extra condition.
RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"
NETWORK_NOT_READY_REASON = "NetworkPluginNotReady"
NO_DEPRECATION_WARNINGS = "ContainerdHasNoDeprecationWarnings"
HAS_DEPRECATION_WARNINGS = "ContainerdHasDeprecationWarnings"

#: Runtime types whose ``options`` table is ``containerd.runc.v1.Options``.
RUNC_RUNTIME_TYPES = ("io.containerd.runc.v2", "io.containerd.pyrunc.v2")

#: The CRI's state lives under these names in the daemon's root and state dirs (containerd
#: keeps the pre-2.0 plugin name for backward compatibility).
CRI_DIR_NAME = "io.containerd.grpc.v1.cri"
