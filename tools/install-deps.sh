#!/usr/bin/env bash
# Install the Debian 12 packages that building, the demo or the tests need; a no-op when all are present.
# Usage: tools/install-deps.sh [build|demo|test] [--slurm]
#   build  compiler, CMake, MPI, HDF5, OpenBLAS, libconfig, zlib, libjpeg-turbo, Random123 (the
#          default)
#   demo   build + the Fashion-MNIST dataset (what `make demo` needs)
#   test   demo + Python with numpy, h5py, PyTorch, torchvision, ONNX, matplotlib (the oracles of
#          the tests and the tools; about 1 GB) and clang with its libFuzzer runtime (the fuzz
#          targets)
#   --slurm  adds a single-node SLURM for the jobs/ test
# Without dpkg (a cluster with environment modules) it installs nothing and says so: CMake then
# finds the libraries or names the one that is missing (README.md, "Building on a cluster").
set -euo pipefail

level=build slurm=0
for arg in "$@"; do
    case $arg in
    build | demo | test) level=$arg ;;
    --slurm) slurm=1 ;;
    *) echo "install-deps: unknown argument '$arg' (usage: install-deps.sh [build|demo|test] [--slurm])" >&2
       exit 2 ;;
    esac
done
if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps: no dpkg here: not installing packages; CMake will find what is" \
         "installed or name what is missing" >&2
    exit 0
fi

pkgs=(gcc make cmake pkg-config
      openmpi-bin libopenmpi-dev libopenblas-dev libhdf5-dev hdf5-tools libconfig-dev zlib1g-dev
      libjpeg62-turbo-dev librandom123-dev)
[[ $level == demo || $level == test ]] && pkgs+=(dataset-fashion-mnist)
[[ $level == test ]] && pkgs+=(python3-numpy python3-h5py python3-torch python3-torchvision
                               python3-onnx python3-matplotlib clang libclang-rt-14-dev)
# SLURM without its recommends (no systemd or cgroup helpers are needed for one node).
slurm_pkgs=()
if [[ $slurm == 1 ]]; then
    slurm_pkgs=(slurmctld slurmd slurm-client munge)
fi

# The packages of a list that are not installed yet.
missing_of() {
    local p
    for p in "$@"; do
        if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != *"install ok installed"* ]]; then
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
