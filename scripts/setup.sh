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
# The spark extra (in dev: tests/test_spark_prepare.py) runs on a JVM: Java 17+ for pyspark 4.
if ! command -v java >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing openjdk-17-jre-headless (Java for pyspark)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; } ||
      echo "setup: could not install Java; the Spark path's tests will be skipped"
  else
    echo "setup: no Java runtime found: the Spark path (seqbert.data.spark) and its tests need one;" \
      "install Java 17+ (e.g. sudo apt-get install openjdk-17-jre-headless). Its tests are skipped until then."
  fi
fi
.venv/bin/python -c "import seqbert, torch, transformers; print(f'setup: seqbert {seqbert.__version__}, torch {torch.__version__}, transformers {transformers.__version__}')"
