#!/usr/bin/env bash
# Master throughput benchmark (not a test): how many candidates per second rank 0 of the search
# hands out and absorbs when evaluating a candidate costs nothing (search.null_eval = true).
#
# Runs one job with NP ranks (default 3, oversubscribed; one master, NP-1 workers): an untrained
# ResNet-8 (pretrain.epochs = 0), no family, EVALS candidates (default 200000) in a population of
# 64, async mode, checkpoints every 50000 results (a checkpoint rewrites the whole history, so a
# small checkpoint_every would measure HDF5, not the master). The search stage's wall time is
# taken from the moments its first and last stderr lines ("search: N evaluations at ..." and
# "search: done") reach this script, timestamped with $EPOCHREALTIME; the rate is
# EVALS / that time. The issue's requirement is at least 10,000 candidates per second.
#
# Env: BUILD (default build), NP (3), EVALS (200000), MODE (async or deterministic).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
BIN=$BUILD/legr-mpi
NP=${NP:-3}
EVALS=${EVALS:-200000}
MODE=${MODE:-async}
[ -x "$BIN" ] || { echo "bench_search: no $BIN; run 'make build' first" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

dir=$(mktemp -d "${TMPDIR:-/tmp}/bench_search.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cat >"$dir/job.cfg" <<EOF
run: { name = "bench"; out_dir = "$dir/runs"; log_every = 1000; };
data: { dataset = "synthetic"; synthetic_n = 256; synthetic_size = 8; };
model: { depth = 8; width = 0.5; };
pretrain: { epochs = 0; };
search: { null_eval = true; evaluations = $EVALS; population = 64; sample = 16;
  mode = "$MODE"; checkpoint_every = 50000; };
family: { enabled = false; };
EOF

source "$SRC/tools/bench_search_lib.sh"
BENCH_TIMEOUT=600 bench_search_job bench_search "$dir" "$EVALS" --oversubscribe --timeout 590 -np "$NP" "$BIN" "$dir/job.cfg"
awk -v t0="$T0" -v t1="$T1" -v n="$EVALS" -v np="$NP" -v mode="$MODE" 'BEGIN {
    s = t1 - t0
    printf "search master throughput: %d null candidates, %d ranks (%d workers), %s mode\n", n, np, np - 1, mode
    printf "search stage wall time %.3f s: %.0f candidates/s (requirement: >= 10000)\n", s, n / s
}'
