#!/usr/bin/env bash
# Packs the Python packages benchmarks/gpu.sh needs that the GPU machine's image lacks (its python3 is 3.12 with
# PyTorch, NumPy, SciPy, pandas, scikit-image, ... but no nnU-Net, SimpleITK, zarr, SQLAlchemy, ...) into
# var/gpu-site/site.tar.xz: the requirements.txt versions, as Python 3.12 manylinux wheels fetched with pip (the
# pure-Python acvl_utils built here), unpacked and compressed with xz so that they travel beside the working tree
# within the device tool's 64 MiB (about 52 MB; SimpleITK alone is a 53 MB wheel). Run here, once, before
#   run(command="bash benchmarks/gpu.sh", carry=["var/gpu-site"], timeout_s=540)
# Takes a few minutes (xz on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(simpleitk==2.5.7 nnunetv2==2.8.1 dynamic_network_architectures==0.4.4 batchgenerators==0.25.5
          batchgeneratorsv2==0.3.6 blosc2==4.15.0 ndindex==1.10.1 connected-components-3d==4.1.1 SQLAlchemy==2.1.9
          alembic==1.20.1 Mako==1.4.3 zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
          nibabel==5.4.2 pydicom==3.0.2)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
    -d "$work/wheels" "${PACKAGES[@]}"
python3 -m pip wheel -q --no-deps --no-build-isolation -w "$work/wheels" acvl_utils==0.2.6  # an sdist only
mkdir -p "$work/site" var/gpu-site
for wheel in "$work"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$work/site/"; done
tar -C "$work/site" -cf - . | xz -T0 -6 > var/gpu-site/site.tar.xz
ls -l var/gpu-site/site.tar.xz
