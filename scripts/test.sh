#!/usr/bin/env bash
# Run pycontainerd's tests: set up (scripts/setup.sh, idempotent), then pytest from the
# repository root with the given arguments. "No tests collected" (pytest exit 5) is a failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    exec sudo -E bash "$REPO/scripts/test.sh" "$@"
fi

bash "$REPO/scripts/setup.sh"
# cached bytecode: the tests start many Python processes (daemons, shims, pyctr)
unset PYTHONDONTWRITEBYTECODE
# pyrunc's shim zygote (plugins/runtimes/pyrunc/zygote.py) retires soon after the last test
# that used it, not after the default 10 minutes
export PYCONTAINERD_SHIM_ZYGOTE_IDLE="${PYCONTAINERD_SHIM_ZYGOTE_IDLE:-20}"

# -P: do not put the repository root on sys.path. The source folders sit there (cmd/, api/,
# core/, ...) and cmd/ would shadow the standard library's cmd module (pdb imports it).
set +e
"$REPO/.venv/bin/python" -P -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
