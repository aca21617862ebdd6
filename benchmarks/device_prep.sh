#!/usr/bin/env bash
# Prepare the device check (benchmarks/device_check.py) for a GPU machine that has neither
# ../shared nor a network: run here, in a checkout beside ../shared, then carry .devref and .whl.
#
#   .devref/reference, .devref/faces  the reference files the check reads (goldens reduced to
#                                     the compared entries) and the real faces, ~55 MiB
#   .whl/                             the pure-Python wheels the GPU image lacks: lpips (its
#                                     v0.1 linear heads are the LPIPS metric's; everything else
#                                     the suite imports is in the image, see the device README)
#
# Both folders are git-ignored. The command to run there is in device_check.py's docstring and
# the README ("Running on a GPU").
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared}

rm -rf .devref .whl
python3 benchmarks/device_check.py --reference "$SHARED/reference" --prepare .devref
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl lpips==0.1.4
du -sh .devref .whl
