#!/usr/bin/env bash
# Set up everything pycontainerd's tests need on a Debian 12 host (run as root, or via sudo).
# Idempotent: a second run installs nothing and only prints what it found.
#   - Debian packages: runc, containerd (ctr and its shim; the daemon is not started),
#     CNI plugins, docker-registry, busybox-static, umoci, iproute2, gcc, libc6-dev, python3-venv
#   - .venv in the repository with the package installed editable: pip install -e '.[test,dev]'
#     (dev too: the api tests regenerate protobuf code with grpcio-tools). EXTRAS overrides.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

say() { printf 'setup: %s\n' "$*"; }

APT_PACKAGES=(
    runc
    containerd
    containernetworking-plugins
    docker-registry
    busybox-static
    umoci
    iproute2
    gcc
    libc6-dev
    python3
    python3-venv
    ca-certificates
)

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        say "not root: re-running with sudo"
        exec sudo -E bash "$REPO/scripts/setup.sh" "$@"
    fi
    say "error: must run as root (apt-get install, and the tests need root)" >&2
    exit 1
fi

# --- Debian packages -------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    say "apt: all ${#APT_PACKAGES[@]} packages already installed"
else
    say "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Optional peers: kubectl (a real Go client of the CRI streaming server) where an apt source
# offers it; its tests skip with that reason where no source does.
if ! command -v kubectl >/dev/null 2>&1; then
    if apt-cache show kubectl >/dev/null 2>&1; then
        say "apt: installing optional kubectl"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kubectl \
            || say "apt: kubectl not installed (optional)"
    else
        say "apt: no source offers kubectl (optional; its streaming interop tests will skip)"
    fi
fi

# The containerd package enables its daemon under systemd; the tests never need it running.
# (We do not stop one that an operator started: we only make sure nothing here depends on it.)

# --- Python venv -----------------------------------------------------------------------------
# Prefer Debian's interpreter (python3-venv is installed for it); PYTHON overrides.
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON="$(command -v python3)"; fi
fi
VENV="$REPO/.venv"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    say "venv: $VENV exists ($("$VENV/bin/python" --version 2>&1))"
else
    if [ -e "$VENV" ]; then
        say "venv: $VENV is unusable, recreating"
        rm -rf "$VENV"
    fi
    say "venv: creating $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
fi

# Stamp keyed by pyproject.toml + setup.py and the interpreter: reinstall when either changes
# or when the package is not importable from this checkout.
EXTRAS="${EXTRAS:-test,dev}"
key="$EXTRAS-$(cat pyproject.toml setup.py 2>/dev/null | sha256sum | cut -d' ' -f1)-$("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
stamp="$VENV/.pycontainerd-setup-stamp"
installed_here() {
    "$VENV/bin/python" - "$REPO" <<'PY' >/dev/null 2>&1
import os, sys, pycontainerd, pycontainerd.core
repo = os.path.realpath(sys.argv[1])
sys.exit(0 if os.path.realpath(pycontainerd.core.__file__).startswith(repo + os.sep) else 1)
PY
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && installed_here; then
    say "pip: pycontainerd[$EXTRAS] already installed (pyproject unchanged)"
else
    say "pip: installing -e '.[$EXTRAS]' into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
    echo "$key" >"$stamp"
fi

# --- What the tests will find ----------------------------------------------------------------
for bin in runc ctr containerd-shim-runc-v2 docker-registry umoci busybox gcc ip; do
    path="$(command -v "$bin" 2>/dev/null || true)"
    if [ -z "$path" ] && [ -x "/usr/sbin/$bin" ]; then path="/usr/sbin/$bin"; fi
    if [ -z "$path" ]; then
        say "error: $bin not found after install" >&2
        exit 1
    fi
done
if [ ! -x /usr/lib/cni/bridge ]; then
    say "error: CNI plugins not found in /usr/lib/cni" >&2
    exit 1
fi
say "ready: $("$VENV/bin/python" --version 2>&1), runc $(runc --version | head -1 | awk '{print $3}'), ctr $(ctr --version | awk '{print $3}')"
