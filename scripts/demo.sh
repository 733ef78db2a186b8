#!/usr/bin/env bash
# The main job, end to end on this machine: set up (scripts/setup.sh), start the pycontainerd
# daemon on its own socket, talk to it with pyctr and with containerd's own ctr, run a pod
# through the CRI with `pyctr cri` (a CNI bridge network of its own, removed at the end), then
# stop it. Everything lives under $DEMO_DIR (default /tmp/pycontainerd-demo); nothing touches a
# real containerd or /var/lib/pycontainerd.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    exec sudo -E bash "$0" "$@"
fi
bash "$REPO/scripts/setup.sh"

DEMO_DIR="${DEMO_DIR:-/tmp/pycontainerd-demo}"
# pyrunc's shim zygote retires a minute after the demo's last container, not after 10
export PYCONTAINERD_SHIM_ZYGOTE_IDLE="${PYCONTAINERD_SHIM_ZYGOTE_IDLE:-60}"
SOCK="$DEMO_DIR/pycontainerd.sock"
PY="$REPO/.venv/bin/python -P"
CNI_DIR="$DEMO_DIR/cni"
PAUSE_IMAGE="registry.k8s.io/pause:3.10"
mkdir -p "$DEMO_DIR"
# The demo's own config (CRI: CNI conf dir, pinned pause image), unless one was put there.
CONFIG_MARK="# written by scripts/demo.sh"
if [ ! -f "$DEMO_DIR/config.toml" ] || grep -qx -e "$CONFIG_MARK" -e 'version = 4' "$DEMO_DIR/config.toml"; then
    cat > "$DEMO_DIR/config.toml" <<EOF
$CONFIG_MARK
version = 4

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
  conf_dir = "$CNI_DIR/net.d"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "$PAUSE_IMAGE"
EOF
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "a CNI network for the demo's pods (bridge + host-local + portmap)"
$PY "$REPO/scripts/demo_cni.py" setup "$CNI_DIR"

step "starting pycontainerd (log: $DEMO_DIR/daemon.log)"
$PY -m pycontainerd.cli.daemon --config "$DEMO_DIR/config.toml" --root "$DEMO_DIR/root" \
    --state "$DEMO_DIR/state" --address "$SOCK" >"$DEMO_DIR/daemon.log" 2>&1 &
DAEMON=$!
cleanup() { kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null; true; }
cri_cleanup() {
    # whatever a failed run left in the CRI, then the daemon, then the CNI network
    if [ -n "${POD:-}" ]; then
        pyctr cri stopp "$POD" >/dev/null 2>&1 || true
        pyctr cri rmp "$POD" >/dev/null 2>&1 || true
    fi
    cleanup
    $PY "$REPO/scripts/demo_cni.py" cleanup "$CNI_DIR" || true
}
trap cri_cleanup EXIT
for _ in $(seq 1 300); do
    grep -q "successfully booted" "$DEMO_DIR/daemon.log" 2>/dev/null && break
    kill -0 "$DAEMON" 2>/dev/null || { cat "$DEMO_DIR/daemon.log"; exit 1; }
    sleep 0.1
done
grep -q "successfully booted" "$DEMO_DIR/daemon.log" || { cat "$DEMO_DIR/daemon.log"; exit 1; }

pyctr() { $PY -m pycontainerd.cli.pyctr --address "$SOCK" "$@"; }
ctr_() { CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1 ctr --address "$SOCK" "$@"; }

step "pyctr version"
pyctr version
step "pyctr plugins ls"
pyctr plugins ls
step "containerd's own ctr against pycontainerd: ctr version"
ctr_ version
step "ctr plugins ls type==io.containerd.grpc.v1"
ctr_ plugins ls type==io.containerd.grpc.v1

step "building a busybox OCI archive from Debian's busybox-static (no network needed)"
ARCHIVE="$DEMO_DIR/busybox.oci.tar"
$PY - "$REPO/tests/support" "$DEMO_DIR" "$ARCHIVE" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
import images
img = images.busybox_image(sys.argv[2] + "/image-cache")
img.oci_archive(sys.argv[3])
print(f"{img.name} {img.target.digest} -> {sys.argv[3]}")
PYEOF

step "pyctr images import (unpacked into overlayfs)"
pyctr images import "$ARCHIVE"
step "ctr images ls"
ctr_ images ls

step "ctr run --rm: a container through containerd's own shim and runc"
ctr_ run --rm docker.io/library/busybox:latest demo-runc \
    sh -c 'echo "hello from $(hostname), a busybox container run by pycontainerd"'
step "pyctr run --rm --runtime io.containerd.pyrunc.v2: our client through our own shim"
pyctr run --rm --runtime io.containerd.pyrunc.v2 \
    docker.io/library/busybox:latest demo-pyrunc sh -c 'echo "hello again, via containerd-shim-pyrunc-v2"'

step "the CRI: pyctr -n k8s.io images import of a pause image (the pinned sandbox image)"
$PY - "$REPO/tests/support" "$DEMO_DIR" "$DEMO_DIR/pause.oci.tar" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
import images
img = images.pause_image(sys.argv[2] + "/image-cache")
img.oci_archive(sys.argv[3])
print(f"{img.name} {img.target.digest} -> {sys.argv[3]}")
PYEOF
pyctr -n k8s.io images import --no-progress "$DEMO_DIR/pause.oci.tar"
pyctr -n k8s.io images import --no-progress "$ARCHIVE"
step "pyctr cri version; pyctr cri images"
pyctr cri version
pyctr cri images

CRI_DIR="$DEMO_DIR/cri"
rm -rf "$CRI_DIR" && mkdir -p "$CRI_DIR/logs"
cat > "$CRI_DIR/pod.json" <<EOF
{
  "metadata": {"name": "demo-pod", "namespace": "default", "uid": "demo-pod-uid", "attempt": 0},
  "hostname": "demo-pod",
  "log_directory": "$CRI_DIR/logs",
  "labels": {"app": "demo"},
  "linux": {}
}
EOF
cat > "$CRI_DIR/container.json" <<'EOF'
{
  "metadata": {"name": "hello"},
  "image": {"image": "docker.io/library/busybox:latest"},
  "command": ["sh", "-c", "echo \"hello from $(hostname), a container in a CRI pod\"; exec sleep 3600"],
  "log_path": "hello.log",
  "linux": {}
}
EOF
step "pyctr cri runp pod.json (network namespace, CNI ADD, pause container)"
POD="$(pyctr cri runp "$CRI_DIR/pod.json")"
echo "$POD"
pyctr cri pods
step "pyctr cri create / start: busybox in the pod"
CTR="$(pyctr cri create "$POD" "$CRI_DIR/container.json" "$CRI_DIR/pod.json")"
pyctr cri start "$CTR"
for _ in $(seq 1 50); do
    grep -q "hello from" "$CRI_DIR/logs/hello.log" 2>/dev/null && break
    sleep 0.1
done
pyctr cri ps
step "pyctr cri logs (the CRI log file, $CRI_DIR/logs/hello.log)"
pyctr cri logs "$CTR"
step "pyctr cri exec: the pod's address, seen from inside the container"
pyctr cri exec "$CTR" ip -4 addr show eth0
POD_IP="$(pyctr cri inspectp "$POD" | $PY -c 'import json,sys; print(json.load(sys.stdin)["status"]["network"]["ip"])')"
echo "PodSandboxStatus network.ip: $POD_IP"
pyctr cri exec "$CTR" ip -4 addr show eth0 | grep -q "inet $POD_IP/" \
    || { echo "demo: the container does not see the pod IP $POD_IP" >&2; exit 1; }
step "pyctr cri stop / rm; stopp / rmp (CNI DEL, network namespace removed)"
pyctr cri stop -t 1 "$CTR"
pyctr cri rm "$CTR"
pyctr cri stopp "$POD"
pyctr cri rmp "$POD"
POD=""
echo "pods left: $(pyctr cri pods -q | wc -l), containers left: $(pyctr cri ps -a -q | wc -l)"

step "stopping pycontainerd; removing the demo's CNI network"
cri_cleanup
trap - EXIT
tail -n 3 "$DEMO_DIR/daemon.log"
