#!/usr/bin/env bash
# The native trainer, LoRA vs full fine-tuning on a random-weight Qwen2.5-VL: see bench/gpu_check.py.
#
#   bash bench/gpu_check.sh            # on a GPU: Qwen2.5-VL-7B's shapes, one table (<= 10 min on one H100)
#   bash bench/gpu_check.sh --smoke    # the CPU smoke CI runs: the tiny test model, seconds
#
# Not a CI job on GPU. Nothing is downloaded; any other flag goes to the Python module (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
exec "$PY" -m bench.gpu_check "$@"
