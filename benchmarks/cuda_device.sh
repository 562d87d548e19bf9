#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (the `device` tool's `run`, from the repo root):
# installs this checkout without fetching anything (that machine's image already has numpy,
# numba, numba-cuda, cuda-core, llvmlite, torch with CUDA, transformers, networkx, click,
# hypothesis, safetensors, ml_dtypes, tqdm and pytest; nothing can be downloaded there), prints
# the versions, then runs benchmarks/cuda_check.py with the arguments given. Everything is also
# written to $OUT (the files that come back), so a run stopped at its time limit still reports.
#
#     bash benchmarks/cuda_device.sh [cuda_check.py options]       # e.g. --budget 240
set -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/sparsec_cuda_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
{
  date -u
  nvidia-smi -L 2>&1 || true
  "$PY" - <<'EOF'
import importlib
for name in ("numpy", "numba", "numba_cuda", "llvmlite", "cuda.core", "torch", "transformers", "ml_dtypes"):
    try:
        m = importlib.import_module(name)
        print(f"{name} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"{name}: not importable ({type(e).__name__}: {e})")
EOF
  # pydot (graph drawing only) is not on that image: --no-deps, and nothing imports it at start
  "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -3
  "$PY" -c "import sparsec; print('sparsec', sparsec.__version__, 'from', sparsec.__file__)"
} 2>&1 | tee "$OUT/env.txt"
"$PY" benchmarks/cuda_check.py "$@" 2>&1 | tee "$OUT/cuda_check.txt"
