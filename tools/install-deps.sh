#!/usr/bin/env bash
# Install every Debian 12 package that building, testing and the demo need; a no-op when all are present.
# Usage: tools/install-deps.sh [--slurm]   (--slurm adds a single-node SLURM for the jobs/ test)
set -euo pipefail

pkgs=(gcc make cmake pkg-config
      openmpi-bin libopenmpi-dev libopenblas-dev libhdf5-dev hdf5-tools libconfig-dev zlib1g-dev
      librandom123-dev dataset-fashion-mnist
      python3-numpy python3-h5py python3-torch python3-torchvision python3-onnx python3-matplotlib)
# SLURM without its recommends (as ENV.md measured it: no systemd or cgroup helpers needed).
slurm_pkgs=()
if [[ "${1:-}" == "--slurm" ]]; then
    slurm_pkgs=(slurmctld slurmd slurm-client munge)
fi

# The packages of a list that are not installed yet.
missing_of() {
    local p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            echo "$p"
        fi
    done
}
mapfile -t missing < <(missing_of "${pkgs[@]}")
mapfile -t missing_slurm < <(missing_of "${slurm_pkgs[@]}")
if [[ ${#missing[@]} -eq 0 && ${#missing_slurm[@]} -eq 0 ]]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]} ${missing_slurm[*]}" >&2
if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages and not root; install them with your package manager" \
         "or load them as modules (see README.md, 'Building on a cluster')" >&2
    exit 1
fi
apt-get update -q
export DEBIAN_FRONTEND=noninteractive
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get install -y -q -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi
if [[ ${#missing_slurm[@]} -gt 0 ]]; then
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing_slurm[@]}"
fi
