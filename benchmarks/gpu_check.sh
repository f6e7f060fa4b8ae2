#!/usr/bin/env bash
# The prepared GPU check of issue 5 (see benchmarks/gpu_check.py). On a lent GPU machine, from the
# repository root:   bash benchmarks/gpu_check.sh
# Needs gfi's dependencies (pip install -e . -c constraints.txt) and, for the correctness part,
# the EfficientNet-Lite0 weight package; writes $OUT/gpu_check.json (or benchmarks/results/).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
exec python benchmarks/gpu_check.py --out "${OUT:-benchmarks/results}" "$@"
