#!/usr/bin/env bash
# The prepared device check of issue 13 (run through the `device` tool when a session is lent a GPU; about 8 minutes on an H200):
# the bench on CUDA (every contender trains and samples on the GPU, timers synchronise the device, peak memory is
# torch.cuda.max_memory_allocated), results written under $OUT (default bench/results) as bench_cuda.{json,md}.
#   device run: bash tools/gpu_bench.sh            (timeout_s 560; the machine needs torch, diffusers, denoising-diffusion-pytorch)
# On that machine first install what is missing (see /work/.library/device/README.md: wheels carried in .whl).
set -euo pipefail
OUT=${OUT:-bench/results}
export PYTHONUNBUFFERED=1 DIFFUSION_COURSE_DATA=${DIFFUSION_COURSE_DATA:-/tmp/dc-data}
PY=${PY:-python3}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.__version__, torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv || true
# budget 60 s per contender and seed, 3 seeds for all, N = 1,000 (sampling is cheap on a GPU)
timeout 520 $PY bench/bench.py --device cuda --budget 60 --n 1000 --steps 50 --seeds 3 --all-seeds --repeats 5 \
    --ddpm-batch 64 --out "$OUT/bench_cuda" 2>&1 | tee "$OUT/bench_cuda.log"
