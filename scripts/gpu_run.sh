#!/bin/bash
# One device run: exactness on tiny models, then the study-sized timings (generation and extraction for all three
# configs, then the full fit, Qwen2.5-7B first). Each step has its own time limit so a slow one leaves the rest.
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpuout}; mkdir -p "$OUT"
{
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch, transformers, sklearn, scipy; print('torch', torch.__version__, 'transformers', transformers.__version__, 'sklearn', sklearn.__version__, 'scipy', scipy.__version__)"
nproc
timeout ${T1:-100} python3 -m empathy_core gpu-check --json "$OUT/exactness.json" --parts exactness
echo "rc exactness $?"
timeout ${T2:-240} python3 -m empathy_core gpu-check --json "$OUT/generation.json" --sizes ${SIZES:-study} --parts generation,extraction
echo "rc generation $?"
timeout ${T3:-250} python3 -m empathy_core gpu-check --json "$OUT/fit.json" --sizes ${SIZES:-study} --parts fit
echo "rc fit $?"
} 2>&1 | grep -v "Loading weights" | tee "$OUT/log.txt"
