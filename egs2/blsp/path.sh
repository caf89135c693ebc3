# Environment of the BLSP recipe. espnet_blsp must be importable:
#   pip install -e ../..        (from this directory), or the README's quick start.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export MAIN_ROOT
export PYTHONUNBUFFERED=1
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc 2>/dev/null || echo 1)}
export TOKENIZERS_PARALLELISM=false
export HF_HUB_DISABLE_TELEMETRY=1
# The mini default never reaches a model hub; real models given as local dirs don't either.
if ! python -c "import espnet_blsp" 2>/dev/null; then
    export PYTHONPATH=${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}
fi
