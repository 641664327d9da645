#!/usr/bin/env bash
# One script for a session with a GPU (issue 9): the CUDA tests, the batched-engine tests, then the CUDA benchmark
# table (time per task and peak memory, per-task vs batched, meta-batch 1/4/16/32, 28px 1-shot and 84px 5-shot).
# A few minutes on an H100. Run from the repository root: bash bench/gpu_check.sh [extra bench/batched.py flags]
# Output: the test summary, then the table to paste into README ("The batched engine") with the card's name.
set -euo pipefail
cd "$(dirname "$0")/.."
# The first Python whose torch sees CUDA (this project's .venv pins the CPU build of torch; a GPU machine needs a
# CUDA build of the same version beside higher, e.g. its system python3): PY=... overrides.
if [ -z "${PY:-}" ]; then
  for candidate in .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import torch, higher, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
      PY=$candidate; break
    fi
  done
  PY=${PY:-.venv/bin/python}
fi
# bench/ imports the checkout's packages as installed ones (`make` installs them editable); a GPU machine's
# python may lack that install, so the checkout goes on the path instead.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import sys, torch; ok = torch.cuda.is_available(); print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0) if ok else "NO CUDA DEVICE"); sys.exit(0 if ok else 1)'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# The CUDA tests must run, not skip: -rs lists any skip with its reason.
timeout 300 "$PY" -m pytest tests/test_cuda.py tests/test_batched.py -q -rs -x
timeout 420 "$PY" bench/batched.py --device cuda --rounds 5 "$@"
