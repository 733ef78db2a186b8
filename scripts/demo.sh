#!/usr/bin/env bash
# The main job, end to end on this machine: set up (scripts/setup.sh), start the pycontainerd
# daemon on its own socket, talk to it with pyctr and with containerd's own ctr, then stop it.
# Everything lives under $DEMO_DIR (default /tmp/pycontainerd-demo); nothing touches a real
# containerd or /var/lib/pycontainerd.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    exec sudo -E bash "$0" "$@"
fi
bash "$REPO/scripts/setup.sh"

DEMO_DIR="${DEMO_DIR:-/tmp/pycontainerd-demo}"
SOCK="$DEMO_DIR/pycontainerd.sock"
PY="$REPO/.venv/bin/python -P"
mkdir -p "$DEMO_DIR"
[ -f "$DEMO_DIR/config.toml" ] || echo 'version = 4' > "$DEMO_DIR/config.toml"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting pycontainerd (log: $DEMO_DIR/daemon.log)"
$PY -m pycontainerd.cli.daemon --config "$DEMO_DIR/config.toml" --root "$DEMO_DIR/root" \
    --state "$DEMO_DIR/state" --address "$SOCK" >"$DEMO_DIR/daemon.log" 2>&1 &
DAEMON=$!
cleanup() { kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null; true; }
trap cleanup EXIT
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

step "stopping pycontainerd"
cleanup
trap - EXIT
tail -n 3 "$DEMO_DIR/daemon.log"
