#!/usr/bin/env bash
# The ASR port's GPU check (benchmarks/gpu_check.py), under 5 minutes on one GPU:
#   bash benchmarks/gpu_check.sh [gpu_check.py options]     # from the repository root
# It writes results/asr/synthetic/gpu_check.json. A GPU machine may lack speechbrain, jiwer,
# soundfile and the rest: they are installed from the wheels in .whl/ when that folder exists
# (a machine without internet; fill it where pip works with benchmarks/gpu_wheels.sh), else
# from PyPI. Nothing is installed into the machine's own environment (a --target folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
missing=$($PY - <<'PYEOF'
import importlib.util
needed = {"speechbrain": "speechbrain==1.1.2", "hyperpyyaml": "hyperpyyaml", "jiwer": "jiwer==4.0.0",
          "soundfile": "soundfile", "espeakng_loader": "espeakng-loader", "pytest": "pytest",
          "yaml": "pyyaml", "tqdm": "tqdm"}
print(" ".join(spec for module, spec in needed.items() if importlib.util.find_spec(module) is None))
PYEOF
)
if [ -n "$missing" ]; then
    site=/tmp/gpu_check_site
    echo "gpu_check: installing into $site: $missing"
    if [ -d .whl ]; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" .whl/*.whl
    else
        $PY -m pip install -q --no-cache-dir --target "$site" $missing
    fi
    export PYTHONPATH="$site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
exec timeout 290 $PY benchmarks/gpu_check.py "$@"
