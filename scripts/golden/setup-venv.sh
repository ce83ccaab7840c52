#!/usr/bin/env bash
# Creates the Python venv (.venv at the repo root, gitignored) used ONLY to regenerate
# golden fixtures. The TypeScript tests never need Python.
# Offline-friendly: pip is expected to be configured with a local mirror; /opt/wheels
# holds the torch CPU wheel. Idempotent: re-running reuses the venv and skips installed packages.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

export PIP_INDEX_URL="${PIP_INDEX_URL:-file:///opt/pypi/simple}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV"
  "$PY" -m venv "$VENV"
fi

if "$VENV/bin/python" -c 'import torch, safetensors, numpy' >/dev/null 2>&1; then
  echo "torch, safetensors, numpy already installed in $VENV"
else
  FIND_LINKS=()
  if [ -d /opt/wheels ]; then FIND_LINKS=(--find-links /opt/wheels); fi
  "$VENV/bin/python" -m pip install "${FIND_LINKS[@]}" torch safetensors numpy
fi

"$VENV/bin/python" -c 'import torch, safetensors, numpy; print("torch", torch.__version__, "| safetensors", safetensors.__version__, "| numpy", numpy.__version__)'
