"""OCI annotations and containerd labels the CRI puts on sandboxes and containers
(containerd's ``internal/cri/annotations`` and ``internal/cri/labels``); kata, runc shims and
NRI plugins read them, so the names are containerd's."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

#: ``io.kubernetes.cri.container-type``: "sandbox" for the pause container, else "container"
CONTAINER_TYPE = "io.kubernetes.cri.container-type"
CONTAINER_TYPE_SANDBOX = "sandbox"
CONTAINER_TYPE_CONTAINER = "container"
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_LOG_DIR = "io.kubernetes.cri.sandbox-log-directory"
SANDBOX_IMAGE_NAME = "io.kubernetes.cri.podsandbox.image-name"
SANDBOX_CPU_PERIOD = "io.kubernetes.cri.sandbox-cpu-period"
SANDBOX_CPU_QUOTA = "io.kubernetes.cri.sandbox-cpu-quota"
SANDBOX_CPU_SHARES = "io.kubernetes.cri.sandbox-cpu-shares"
SANDBOX_MEM = "io.kubernetes.cri.sandbox-memory"
CONTAINER_NAME = "io.kubernetes.cri.container-name"
IMAGE_NAME = "io.kubernetes.cri.image-name"
#: the CNI capability carrying the pod's annotations
POD_ANNOTATIONS = "io.kubernetes.cri.pod-annotations"

#: containerd labels on the containers the CRI creates
KIND_LABEL = "io.cri-containerd.kind"
KIND_SANDBOX = "sandbox"
KIND_CONTAINER = "container"
#: container extensions holding the CRI metadata
SANDBOX_METADATA_EXTENSION = "io.cri-containerd.sandbox.metadata"
CONTAINER_METADATA_EXTENSION = "io.cri-containerd.container.metadata"
#: the extension of the sandbox record (metadata sandbox store) holding the CRI metadata
SANDBOX_RECORD_METADATA = "metadata"
#: the extension of the sandbox record holding the last UpdatePodSandboxResources (containerd's
#: ``podsandbox.UpdatedResourcesKey``)
SANDBOX_RECORD_UPDATED_RESOURCES = "updated-resources"


def _pattern(glob: str) -> re.Pattern[str]:
    # Go's path.Match: '*' and '?' never match '/'; [...] classes as in fnmatch
    out = []
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = glob.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = glob[i + 1 : end]
                if body.startswith("^"):
                    body = "^" + body[1:].replace("\\", "\\\\")
                out.append(f"[{body}]")
                i = end
        elif ch == "\\" and i + 1 < len(glob):
            i += 1
            out.append(re.escape(glob[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def passthrough(annotations: Mapping[str, str], patterns: Sequence[str]) -> dict[str, str]:
    """The pod annotations a runtime handler passes to the runtime (``pod_annotations``
    globs, matched as Go's ``path.Match``)."""
    compiled = [_pattern(p) for p in patterns]
    return {k: v for k, v in annotations.items() if any(c.match(k) for c in compiled)}
