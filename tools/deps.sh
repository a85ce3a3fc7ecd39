#!/bin/sh
# deps.sh - installs the Debian packages the suite builds against, only when missing.
# MPFR + GMP (exact reference), CUnit (tests), zlib (NPZ).  CUDA comes from /usr/local/cuda.
set -e
need=""
[ -f /usr/include/mpfr.h ] || need="$need libmpfr-dev"
[ -f /usr/include/gmp.h ] || [ -f /usr/include/x86_64-linux-gnu/gmp.h ] || need="$need libgmp-dev"
[ -f /usr/include/CUnit/CUnit.h ] || need="$need libcunit1-dev"
[ -f /usr/include/zlib.h ] || need="$need zlib1g-dev"
command -v cc >/dev/null 2>&1 || need="$need gcc"
[ -z "$need" ] && exit 0
echo "deps: installing$need"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
