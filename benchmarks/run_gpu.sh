#!/usr/bin/env bash
# Every GPU benchmark figure in one run: about 8-12 minutes on one H100/H200, no downloads
# (random weights at the real 7B / Whisper-large-v2 shapes, built from transformers configs).
#
#   benchmarks/run_gpu.sh [out_dir]          # default: benchmarks/results_gpu
#
# Writes <out_dir>/<name>.txt (printed output) and <name>.json (figures) for
#   cif, kd_memory, whisper_encoder   the older scripts, with --device cuda where they take it
#                                     (otherwise on this machine's CPU, as the table says)
#   train_step                        BLSP / BLSP-KD training step +- Partial LoRA vs the official-style step
#   teacher                           teacher generation tokens/s vs HF generate at batch 8
#   decode                            ASR decoding RTF, batched vs one utterance at a time
#   ddp_1gpu, ddp_2gpu, ddp_scaling   1-GPU vs 2-GPU DDP throughput of the BLSP-KD step (torchrun),
#                                     when at least 2 GPUs are visible
# plus nvidia-smi.txt, status.txt (exit status and seconds per script) and summary.md (one table).
# Exit status: 0 if every script met its target, 1 otherwise (the others still run).
set -uo pipefail

cd "$(dirname "$0")/.."
out=${1:-benchmarks/results_gpu}
mkdir -p "${out}"
: > "${out}/status.txt"
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (run_gpu.sh) $*"; }

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    log "no CUDA device visible; for the CPU set run: python benchmarks/run_cpu.py"
    exit 1
fi
# A machine with torch and transformers but no espnet and no network (the lent H100/H200s):
# the repo is used from the working tree, espnet from a carried wheel (benchmarks/README.md).
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
if ! python -c "import espnet2" 2>/dev/null; then
    if ls .whl/espnet-*.whl > /dev/null 2>&1; then
        log "installing the carried $(ls .whl/espnet-*.whl) into /tmp/site"
        python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/espnet-*.whl || exit 1
        export PYTHONPATH="${PYTHONPATH}:/tmp/site"
    else
        log "espnet is not importable and .whl/ holds no espnet wheel (see benchmarks/README.md)"
        exit 1
    fi
fi
ngpu=$(python -c "import torch; print(torch.cuda.device_count())")
nvidia-smi > "${out}/nvidia-smi.txt" 2>&1 || true
log "${ngpu} GPU(s) visible; outputs -> ${out}"

status=0
run() {  # run <name> <command...>: tee the output to <name>.txt, record the exit status and time
    local name=$1; shift
    log "${name}: $*"
    local t0=${SECONDS}
    "$@" 2>&1 | tee "${out}/${name}.txt"
    local rc=${PIPESTATUS[0]}
    echo "${name} rc=${rc} $((SECONDS - t0)) s" >> "${out}/status.txt"
    [ "${rc}" -eq 0 ] || status=1
}
takes() { python "benchmarks/$1" --help 2>/dev/null | grep -q -- "$2"; }  # takes <script> <option>

# 1. the older scripts (CIF, KD-loss memory, Whisper encoder)
for script in bench_cif.py bench_kd_memory.py bench_whisper_encoder.py; do
    name=${script#bench_}; name=${name%.py}
    if takes "${script}" --device; then
        run "${name}" python "benchmarks/${script}" --device cuda
    else
        log "${script} has no --device option: it runs on the CPU"
        run "${name}" python "benchmarks/${script}"
    fi
done

# 2. issue 5: training step, teacher generation, decoding at 7B shapes
run train_step python benchmarks/bench_train_step.py --device cuda --json "${out}/train_step.json"
run teacher python benchmarks/bench_teacher.py --device cuda --json "${out}/teacher.json"
run decode python benchmarks/bench_decode.py --device cuda --json "${out}/decode.json"

# 3. data-parallel scale-out of the BLSP-KD step: 1 GPU vs 2 GPUs, same per-GPU batch
if [ "${ngpu}" -ge 2 ]; then
    for n in 1 2; do
        run "ddp_${n}gpu" python -m torch.distributed.run --standalone --nproc_per_node "${n}" \
            benchmarks/bench_train_step.py \
            --device cuda --ddp --systems kd --json "${out}/ddp_${n}gpu.json"
    done
    python - "${out}" <<'PY' | tee "${out}/ddp_scaling.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
try:
    one, two = (json.loads((out / f"ddp_{n}gpu.json").read_text()) for n in (1, 2))
except FileNotFoundError as e:
    sys.exit(f"DDP scaling: a run failed ({e})")
eff = two["samples_per_s"] / (2 * one["samples_per_s"])
print(f"DDP, BLSP-KD step, batch {one['batch_per_rank']} per GPU: 1 GPU {one['samples_per_s']:.2f} samples/s, "
      f"2 GPUs {two['samples_per_s']:.2f} samples/s: {two['samples_per_s'] / one['samples_per_s']:.2f}x "
      f"({100 * eff:.0f} % scaling efficiency)")
PY
else
    echo "only ${ngpu} GPU was visible: the 1-GPU vs 2-GPU DDP throughput was not measured" | tee "${out}/ddp_scaling.txt"
fi

# 4. one table
python benchmarks/run_cpu.py --table_from "${out}" --out "${out}/summary.md"
cat "${out}/ddp_scaling.txt"
log "done in ${SECONDS} s; exit status ${status} (see ${out}/status.txt)"
exit ${status}
