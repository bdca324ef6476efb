#!/usr/bin/env bash
# CMake flags that build llama.cpp for this CPU's vector units but never for AMX.
#
# GGML_NATIVE (-march=native) turns AMX on where the CPU reports it, and on some virtual
# machines AMX tile instructions then fault (SIGILL in ggml_backend_amx_mul_mat, seen on
# the CI machines). So: native off, and each AVX family this CPU has, turned on by name.
set -euo pipefail
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
args="-DGGML_NATIVE=OFF"
on() { args+=" -D$1=ON"; }
has avx && on GGML_AVX
has avx2 && on GGML_AVX2
has fma && on GGML_FMA
has f16c && on GGML_F16C
has bmi2 && on GGML_BMI2
has avx_vnni && on GGML_AVX_VNNI
if has avx512f && has avx512bw && has avx512vl && has avx512dq && has avx512cd; then
    on GGML_AVX512
    has avx512vbmi && on GGML_AVX512_VBMI
    has avx512_vnni && on GGML_AVX512_VNNI
    has avx512_bf16 && on GGML_AVX512_BF16
fi
echo "$args"
