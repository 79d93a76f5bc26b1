#!/usr/bin/env bash
# Install every Debian 12 package that building, testing and the demo need; a no-op when all are present.
# Usage: tools/install-deps.sh [--slurm]   (--slurm adds a single-node SLURM for the jobs/ test)
set -euo pipefail

pkgs=(gcc make cmake pkg-config
      openmpi-bin libopenmpi-dev libopenblas-dev libhdf5-dev hdf5-tools libconfig-dev zlib1g-dev
      librandom123-dev dataset-fashion-mnist
      python3-numpy python3-h5py python3-torch python3-matplotlib)
if [[ "${1:-}" == "--slurm" ]]; then
    pkgs+=(slurmctld slurmd slurm-client munge)
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages and not root; install them with your package manager" \
         "or load them as modules (see README.md, 'Building on a cluster')" >&2
    exit 1
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}"
