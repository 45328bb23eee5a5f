#!/usr/bin/env bash
# Create .venv with rlhfkit installed. `scripts/setup.sh dev` adds the test extras.
# torch is pinned to 2.13.0 here because this machine kind carries its CPU wheel on disk;
# pyproject keeps the range open (torch>=2.4) for everyone else.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
# pip prints a warning per missing local mirror folder on some machines: keep the log readable.
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }; }
python -c "import torch" 2>/dev/null || quiet pip install -q "torch==${TORCH_VERSION:-2.13.0}"
if [ "${1:-}" = "dev" ]; then
  quiet pip install -q -e ".[dev]"
else
  quiet pip install -q -e .
fi
