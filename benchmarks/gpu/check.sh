#!/usr/bin/env bash
# One-call GPU check of the MSDA kernels, for a machine with an NVIDIA GPU and no network:
#   1. build libdetrt_plugins for this GPU's architecture (pip, no build isolation, no downloads);
#   2. correctness against float64 (tests/plugins/test_msda_cuda.py: fp32 1e-5, fp16 1e-3 relative; the
#      test that the build has the default architecture list is left out: this build targets one GPU);
#   3. compute-sanitizer memcheck and racecheck on small shapes (benchmarks/gpu/sanitize_shapes.py);
#   4. the R50 encoder/decoder benchmark against the PyTorch reference and the original
#      Deformable-DETR CUDA kernel, JIT-compiled from the transformers==4.46.3 wheel's
#      kernels/deformable_detr sources (benchmarks/gpu/msda_gpu.py);
# and writes OUT_DIR/gpu_check.md (each step's status, then the benchmark table) plus one log per step.
#
# Usage: benchmarks/gpu/check.sh [--dry-run] [--wheel TRANSFORMERS_WHEEL] OUT_DIR
#   --wheel   transformers-4.46.3-py3-none-any.whl carried to the machine (or DETRT_TRANSFORMERS_WHEEL)
#   --dry-run check the arguments and print the commands without running them (no GPU needed)
# Environment: PYTHON (default python3), COMPUTE_SANITIZER (default: on PATH or $CUDA_HOME/bin).
# Exit status: 0 when every step passed, 1 when one failed, 2 for bad arguments.
set -uo pipefail

usage() { sed -n '/^# Usage:/,/^# Exit status:/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
fail() { echo "check.sh: $*" >&2; exit 2; }

dry_run=0
wheel="${DETRT_TRANSFORMERS_WHEEL:-}"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --wheel) [ $# -ge 2 ] || fail "--wheel needs a path"; wheel="$2"; shift ;;
    --wheel=*) wheel="${1#--wheel=}" ;;
    -h|--help) usage ;;
    -*) fail "unknown option $1 (see --help)" ;;
    *) [ -z "$out" ] || fail "one OUT_DIR only, got '$out' and '$1'"; out="$1" ;;
  esac
  shift
done
[ -n "$out" ] || { echo "check.sh: OUT_DIR is missing" >&2; usage; }
[ -n "$wheel" ] || fail "no transformers wheel: pass --wheel transformers-4.46.3-py3-none-any.whl or set DETRT_TRANSFORMERS_WHEEL"
[ -f "$wheel" ] || fail "transformers wheel $wheel does not exist"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || fail "python '$python' not found (set PYTHON)"
kernel_dir="transformers/kernels/deformable_detr"
"$python" - "$wheel" "$kernel_dir" <<'PY' || fail "$wheel is not a transformers wheel with $kernel_dir/cuda/ms_deform_attn_cuda.cu"
import sys, zipfile
try:
    names = zipfile.ZipFile(sys.argv[1]).namelist()
except (OSError, zipfile.BadZipFile):
    sys.exit(1)
sys.exit(0 if f"{sys.argv[2]}/cuda/ms_deform_attn_cuda.cu" in names else 1)
PY

root="$(cd "$(dirname "$0")/../.." && pwd)"
sanitizer="${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")}"
if [ "$dry_run" = 0 ]; then
  command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: this script needs an NVIDIA GPU (try --dry-run)"
  arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d ' .')"
  [ -n "$arch" ] || fail "nvidia-smi reported no GPU"
  [ -x "$sanitizer" ] || fail "compute-sanitizer not found (set COMPUTE_SANITIZER)"
  mkdir -p "$out" || fail "cannot create $out"
  out="$(cd "$out" && pwd)"
else
  arch="<compute capability from nvidia-smi>"
fi

statuses=()
# step NAME LOG COMMAND...: runs COMMAND in the repository root with its output in OUT_DIR/LOG.
step() {
  local name="$1" log="$2"
  shift 2
  if [ "$dry_run" = 1 ]; then
    printf 'step %s: (cd %q &&' "$name" "$root"; printf ' %q' "$@"; printf ' > %q 2>&1)\n' "$out/$log"
    return
  fi
  echo "== $name (log: $out/$log)"
  if (cd "$root" && "$@") >"$out/$log" 2>&1; then
    statuses+=("| $name | passed | $log |")
  else
    statuses+=("| $name | FAILED (exit $?) | $log |")
    tail -n 20 "$out/$log"
  fi
}

step build build.log "$python" -m pip install --no-deps --no-build-isolation --no-index -e . \
  "-Ccmake.define.CMAKE_CUDA_ARCHITECTURES=${arch}-real"
step "correctness vs float64" correctness.log "$python" -m pytest -q -p no:cacheprovider \
  tests/plugins/test_msda_cuda.py tests/plugins/test_msda_library.py \
  --deselect tests/plugins/test_msda_cuda.py::test_cuda_entry_points_built_for_default_architectures
step "compute-sanitizer memcheck" memcheck.log "$sanitizer" --tool memcheck --error-exitcode 1 \
  "$python" benchmarks/gpu/sanitize_shapes.py
step "compute-sanitizer racecheck" racecheck.log "$sanitizer" --tool racecheck --error-exitcode 1 \
  "$python" benchmarks/gpu/sanitize_shapes.py
step "original kernel sources" unpack.log "$python" -c \
  "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith(sys.argv[3])])" \
  "$wheel" "$out/original" "$kernel_dir/"
step "R50 benchmark" benchmark.log "$python" benchmarks/gpu/msda_gpu.py \
  --original-kernel "$out/original/$kernel_dir" --work "$out/original_build" --out "$out/msda_gpu.md"

[ "$dry_run" = 1 ] && exit 0
{
  echo "# MSDA GPU check"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1), sm_${arch}, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "| step | result | log |"
  echo "|---|---|---|"
  printf '%s\n' "${statuses[@]}"
  echo
  [ -f "$out/msda_gpu.md" ] && cat "$out/msda_gpu.md"
} >"$out/gpu_check.md"
cat "$out/gpu_check.md"
for s in "${statuses[@]}"; do
  case "$s" in *FAILED*) exit 1 ;; esac
done
exit 0
