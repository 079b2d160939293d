#!/usr/bin/env bash
# Create .venv and install seqbert with its test extras. Idempotent: a second run is quick.
#
# torch: this installs $TORCH_SPEC (default torch==2.13.0, the CPU wheel on the project's machines)
# only when the venv has no torch yet. GPU users: install your own torch build into .venv first
# (or set TORCH_SPEC, e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  echo "setup: installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install --quiet $TORCH_SPEC
fi
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/python -c "import seqbert, torch, transformers; print(f'setup: seqbert {seqbert.__version__}, torch {torch.__version__}, transformers {transformers.__version__}')"
