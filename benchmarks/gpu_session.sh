#!/usr/bin/env bash
# One short GPU session: the CUDA tests (tests/test_cuda.py, skipped on CPU-only machines)
# and the inference benchmark on the GPU. Run from the repository root on a GPU machine:
#
#     OUT=/tmp/gpu bash benchmarks/gpu_session.sh
#
# On a machine without internet, put wheels of the missing packages in .whl/ first (they
# are installed into /tmp/site): dask, distributed, cf-xarray, pint, pint-xarray, zarr,
# numcodecs, netCDF4, cftime and their small dependencies.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, xarray, dask, os; print('torch', torch.__version__, 'xarray', xarray.__version__, 'dask', dask.__version__, 'cpus', os.cpu_count())" | tee -a "$OUT/gpu.txt"
timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"
timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/inference.py --device cuda --scale-up "${SCALE_UP:-4}" --parts "${PARTS:-1,2,3,4}" \
    --out "$OUT/benchmarks-inference-gpu.md" 2>&1 | tee "$OUT/bench.log"
