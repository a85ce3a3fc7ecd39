#!/bin/sh
# deps.sh - installs the Debian packages the suite builds against, only when missing.
# MPFR + GMP (exact reference), CUnit (tests), zlib (NPZ), clang with libFuzzer (parser
# fuzzing).  CUDA comes from /usr/local/cuda.
set -e
need=""
[ -f /usr/include/mpfr.h ] || need="$need libmpfr-dev"
[ -f /usr/include/gmp.h ] || [ -f /usr/include/x86_64-linux-gnu/gmp.h ] || need="$need libgmp-dev"
[ -f /usr/include/CUnit/CUnit.h ] || need="$need libcunit1-dev"
[ -f /usr/include/zlib.h ] || need="$need zlib1g-dev"
command -v cc >/dev/null 2>&1 || need="$need gcc"
# clang + its runtime: the -Werror clang build and the libFuzzer parser targets
command -v clang >/dev/null 2>&1 || need="$need clang"
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1 || need="$need libclang-rt-dev"
[ -z "$need" ] && exit 0
echo "deps: installing$need"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
