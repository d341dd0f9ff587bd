#!/usr/bin/env bash
# Set up a virtual environment in .venv with ptychopinn installed (editable).
#
#   bash scripts/setup.sh          # runtime only
#   bash scripts/setup.sh --dev    # plus the test and lint tools and the optional extras the
#                                  # tests exercise (tensorboard, mlflow, ptychodus)
#
# PyTorch: a bare `torch` requirement can pull a multi-GB CUDA build, so when the
# environment has no importable torch we install the CPU build torch==2.13.0 first;
# an existing torch (say a CUDA build you installed yourself) is left alone.
# PYTHON picks the interpreter (default: python3); VENV the folder (default: .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
extras=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev,tensorboard,mlflow,ptychodus]" ;;
    *) echo "setup.sh: unknown option '$arg' (known: --dev)" >&2; exit 2 ;;
  esac
done

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
"$py" -m pip install --quiet --upgrade pip

if ! "$py" -c "import torch" >/dev/null 2>&1; then
  echo "setup: no importable torch; installing torch==2.13.0 (CPU build)"
  "$py" -m pip install --quiet "torch==2.13.0"
fi

echo "setup: installing ptychopinn$extras"
"$py" -m pip install --quiet -e ".$extras"
"$py" -c "import ptychopinn, torch; print(f'setup: ptychopinn {ptychopinn.__version__}, torch {torch.__version__} ready in $VENV')"
