#!/usr/bin/env bash
# Hearth on an NVIDIA GPU, in one go: build llama-cpp-python with CUDA into a scratch venv,
# then doctor, the memory estimate against llama.cpp with every layer offloaded, engine vs
# bare llama.cpp (both models, token data included), and GPU vs CPU; one summary table.
#
#   tests/bench/gpu_check.sh [--cpu-only] [--dry-run] [--skip-build] [--quick]
#                            [--rounds N] [--tokens N] [--venv DIR] [--base-python PY]
#                            [--llama-spec SPEC] [--jobs N] [--out DIR] [--models LIST]
#                            [--steps doctor,memory,engine,gpu-vs-cpu,gui]
#
#   --cpu-only     no CUDA build and no GPU: the base Python's llama.cpp, layers on the CPU
#                  (checks this script on any machine)
#   --dry-run      print each step's command instead of running it
#   --skip-build   reuse the scratch venv built by an earlier run
#   --quick        1 round of 8 tokens, short prompt, one engine mode (plumbing checks)
#   --models       smollm2,gemma3 (default both); --steps: which checks to run (default all)
#   --llama-spec   what pip builds (default: llama-cpp-python pinned in pyproject.toml;
#                  a path to an sdist or a source tree works offline)
# Builds for the detected GPU architecture only (nvidia-smi --query-gpu=compute_cap) on all
# cores. Offline machines: set PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR with scikit-build-core,
# cmake and ninja wheels in DIR, and --llama-spec pointing at the sdist.
# Budget: under 9 minutes on 16 cores (build ~4-5 min for one architecture, checks ~2 min).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"

CPU_ONLY=0 DRY=0 SKIP_BUILD=0 ROUNDS=9 TOKENS=128 QUICK=0
MODELS="smollm2,gemma3"
STEPS="doctor,memory,engine,gpu-vs-cpu,gui"
VENV="${TMPDIR:-/tmp}/hearth-gpu-venv"
BASE_PY=""
LLAMA_SPEC=""
JOBS="$(nproc 2>/dev/null || echo 4)"
OUT="${TMPDIR:-/tmp}/hearth-gpu-check"

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "gpu_check: $*" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-only) CPU_ONLY=1 ;;
    --dry-run) DRY=1 ;;
    --skip-build) SKIP_BUILD=1 ;;
    --quick) ROUNDS=1 TOKENS=8 QUICK=1 ;;
    --models) need_value "$@"; MODELS="$2"; shift ;;
    --steps) need_value "$@"; STEPS="$2"; shift ;;
    --rounds) need_value "$@"; ROUNDS="$2"; shift ;;
    --tokens) need_value "$@"; TOKENS="$2"; shift ;;
    --venv) need_value "$@"; VENV="$2"; shift ;;
    --base-python) need_value "$@"; BASE_PY="$2"; shift ;;
    --llama-spec) need_value "$@"; LLAMA_SPEC="$2"; shift ;;
    --jobs) need_value "$@"; JOBS="$2"; shift ;;
    --out) need_value "$@"; OUT="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive whole number (got '$ROUNDS')"
[[ "$TOKENS" =~ ^[1-9][0-9]*$ ]] || die "--tokens must be a positive whole number (got '$TOKENS')"
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive whole number (got '$JOBS')"
[[ "$MODELS" =~ ^(smollm2|gemma3)(,(smollm2|gemma3))*$ ]] || die "--models takes smollm2 and/or gemma3, comma-separated (got '$MODELS')"
for s in ${STEPS//,/ }; do
  [[ "$s" =~ ^(doctor|memory|engine|gpu-vs-cpu|gui)$ ]] || die "unknown step '$s' in --steps (doctor, memory, engine, gpu-vs-cpu, gui)"
done
wants() { [[ ",$STEPS," == *",$1,"* ]]; }

if [[ -z "$BASE_PY" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then BASE_PY="$REPO/.venv/bin/python"
  elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then BASE_PY="$VIRTUAL_ENV/bin/python"
  else BASE_PY="$(command -v python3)"; fi
fi
[[ -x "$BASE_PY" ]] || die "base Python '$BASE_PY' is not executable; pass --base-python"
if [[ -z "$LLAMA_SPEC" ]]; then
  # The version the base environment runs (the CPU build), else pyproject.toml's pin.
  pin="$("$BASE_PY" -c 'import importlib.metadata as m; print("llama-cpp-python==" + m.version("llama-cpp-python"))' 2>/dev/null \
    || grep -o 'llama-cpp-python[^"]*' pyproject.toml | head -1 || true)"
  LLAMA_SPEC="${pin:-llama-cpp-python}"
fi

mkdir -p "$OUT"
SUMMARY="$OUT/summary.tsv"
: > "$SUMMARY"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export QT_QPA_PLATFORM=offscreen

row() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$SUMMARY"; }

# step NAME COMMAND...: run (or print) a command, log it, time it, record pass/fail.
step() {
  local name="$1"; shift
  local log="$OUT/${name// /_}.log"
  if [[ $DRY -eq 1 ]]; then
    echo "[dry-run] $name: $*"
    row "-" "$name" "dry run"
    return 0
  fi
  echo "== $name: $*"
  local t0=$SECONDS rc=0
  "$@" > >(tee "$log") 2>&1 || rc=$?
  row "-" "$name" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc, $log)") in $((SECONDS - t0)) s"
  return 0
}

if [[ $CPU_ONLY -eq 1 ]]; then
  PY="$BASE_PY"; LAYERS=0; ARCH="none (cpu only)"
else
  command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver here (use --cpu-only to check the script)"
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d ' .')"
  [[ "$cap" =~ ^[0-9]+$ ]] || die "could not read the GPU's compute capability from nvidia-smi (got '$cap')"
  ARCH="$cap"
  row "-" "GPU" "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1), sm_$ARCH"
  PY="$VENV/bin/python"; LAYERS=-1
  if [[ $SKIP_BUILD -eq 0 ]]; then
    build() {
      rm -rf "$VENV"
      "$BASE_PY" -m venv "$VENV"
      # The app's other dependencies come from the base environment (a .pth after the
      # venv's own site-packages, so the CUDA llama_cpp built here wins).
      "$BASE_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
        > "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/hearth-base.pth"
      CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$ARCH -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \
      CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" MAKEFLAGS="-j$JOBS" \
        "$PY" -m pip install --no-deps --no-cache-dir --force-reinstall "$LLAMA_SPEC"
      "$PY" -c 'import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)'
    }
    step "build llama-cpp-python (CUDA sm_$ARCH, $JOBS jobs)" build
  fi
fi
row "-" "python" "$PY"

doctor_json() { "$PY" -m app doctor --json > "$OUT/doctor.json"; }
wants doctor && step "hearth doctor --json (> $OUT/doctor.json)" doctor_json
if wants doctor && [[ $DRY -eq 0 && -s "$OUT/doctor.json" ]]; then
  row "-" "doctor" "$("$BASE_PY" - "$OUT/doctor.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
gpus = [x["name"] for x in d.get("devices", []) if x.get("type") != "CPU"]
print(f"llama-cpp-python {d.get('llama_cpp_python')}, backends {','.join(d.get('backends', []))}, "
      f"gpu_offload {d.get('gpu_offload')}, devices {gpus or 'CPU only'}; "
      f"{d.get('diagnosis', {}).get('summary', '')}")
EOF
)"
fi
QUICK_ARGS=()
[[ $QUICK -eq 1 ]] && QUICK_ARGS=(--modes auto --before "" --system-repeat 2)
wants memory && step "memory estimate vs llama.cpp (layers $LAYERS)" \
  "$PY" -m pytest -q tests/core/machine/test_memory_vs_llama.py
wants engine && step "engine vs bare llama.cpp (layers $LAYERS)" "$PY" -m tests.bench.host_time \
  --models "$MODELS" --rounds "$ROUNDS" --tokens "$TOKENS" --gpu-layers "$LAYERS" \
  --summary "$SUMMARY" "${QUICK_ARGS[@]}"
if wants gpu-vs-cpu; then
  if [[ $CPU_ONLY -eq 0 ]]; then
    step "GPU vs CPU" "$PY" -m tests.bench.gpu_vs_cpu --models "$MODELS" --rounds "$ROUNDS" \
      --tokens "$TOKENS" --summary "$SUMMARY"
  else
    row "-" "GPU vs CPU" "skipped (--cpu-only)"
  fi
fi
if wants gui; then
  if [[ -f tests/bench/gui_path.py ]]; then
    step "GUI path vs hearth ask" "$PY" -m tests.bench.gui_path --rounds "$ROUNDS" --summary "$SUMMARY"
  else
    row "-" "GUI path vs hearth ask" "no bench yet (tests/bench/gui_path.py)"
  fi
fi

echo
echo "== summary (arch $ARCH, $ROUNDS rounds, $TOKENS tokens; logs in $OUT)"
"$BASE_PY" - "$SUMMARY" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
w0 = max([len(r[0]) for r in rows] + [5])
w1 = max([len(r[1]) for r in rows] + [4])
print(f"{'model':<{w0}}  {'what':<{w1}}  result")
for model, what, value in rows:
    print(f"{model:<{w0}}  {what:<{w1}}  {value}")
EOF
