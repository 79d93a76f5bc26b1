#!/usr/bin/env bash
# Search throughput benchmark (not a test): candidates per hour of a real LeGR search, and where
# a candidate's time goes.
#
# The setting is the LeGR reference code's on Fashion-MNIST: ResNet-20, target 50% of the
# FLOPs, tau 50 fine-tuning steps at batch 128 and lr 0.01, fitness on 6,000 validation images,
# population 16, tournament 4, EVALS candidates (default 32), async mode; NP ranks (default 2,
# one thread each). Every candidate is fine-tuned (search.reuse_fitness off), as in the reference
# code, so the rate measures evaluations. The base network is BASE (a legr-model file of a trained ResNet-20 on
# Fashion-MNIST, e.g. a run's base.h5) or, without one, the network after PRETRAIN_EPOCHS
# (default 1) epochs of pretraining: a candidate costs the same whatever the weights, only its
# fitness differs. The rate counts the search stage alone: from rank 0's "search: N evaluations" line to
# "search: done" (stderr lines timestamped as they arrive), so pretraining and start-up are out.
# It prints candidates/h, each rank's candidates and busy share (the job's search_ranks event),
# and the mean per-candidate split into pruning (ranking + surgery), tau steps and validation
# (the candidate events of log.jsonl).
#
# Env: BUILD (default build), NP (2), EVALS (32), BASE, PRETRAIN_EPOCHS (1), DATA (the
# Fashion-MNIST directory, default Debian's), KEEP=1 to keep the run directory.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$SRC/build}
case $BUILD in /*) ;; *) BUILD=$SRC/$BUILD ;; esac
BIN=$BUILD/legr-mpi
NP=${NP:-2}
EVALS=${EVALS:-32}
BASE=${BASE:-}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-1}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
[ -x "$BIN" ] || { echo "bench_candidates: no $BIN; run 'make build' first" >&2; exit 2; }
[ -d "$DATA" ] || { echo "bench_candidates: no Fashion-MNIST in $DATA (DATA=...)" >&2; exit 2; }
if [ -n "$BASE" ]; then
    [ -f "$BASE" ] || { echo "bench_candidates: BASE $BASE: no such file" >&2; exit 2; }
    BASE=$(cd "$(dirname "$BASE")" && pwd)/$(basename "$BASE")
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

dir=$(mktemp -d "${TMPDIR:-/tmp}/bench_candidates.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then echo "bench_candidates: run directory $dir"; else trap 'rm -rf "$dir"' EXIT; fi
cat >"$dir/job.cfg" <<EOF
run: { name = "bench"; seed = 1; out_dir = "$dir/runs"; log_every = 1000; threads = 1; };
data: { dataset = "fashion-mnist"; dir = "$DATA"; val_fraction = 0.1; augment = true;
        crop_pad = 2; flip = true; };
model: { arch = "resnet"; depth = 20; ${BASE:+init = \"$BASE\";} };
pretrain: { epochs = $PRETRAIN_EPOCHS; batch = 128; lr = 0.1; schedule = "cosine"; };
search: { target_flops = 0.5; population = 16; sample = 4; evaluations = $EVALS; tau = 50;
          lr = 0.01; batch = 128; val_limit = 0; mode = "async"; checkpoint_every = 1000;
          reuse_fitness = false; };
family: { enabled = false; };
EOF

source "$SRC/tools/bench_search_lib.sh"
bench_search_job bench_candidates "$dir" "$EVALS" --oversubscribe --bind-to none -np "$NP" "$BIN" "$dir/job.cfg"
log=$dir/runs/bench/log.jsonl
/usr/bin/python3 - "$log" "$T0" "$T1" "$NP" "${BASE:-pretrained $PRETRAIN_EPOCHS epoch(s)}" <<'EOF'
import json, statistics, sys
log, t0, t1, np_, base = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ev = [json.loads(l) for l in open(log)]
cand = [e for e in ev if e["event"] == "candidate"]
ranks = [e for e in ev if e["event"] == "search_ranks"][-1]
wall = t1 - t0
print(f"LeGR search, ResNet-20 / Fashion-MNIST, target 50%, tau 50, 6000 validation images; base: {base}")
print(f"{len(cand)} candidates on {np_} ranks in {wall:.1f} s (search stage): {len(cand) / wall * 3600:.0f} candidates/h")
for r, (c, b) in enumerate(zip(ranks["candidates"], ranks["busy_seconds"])):
    print(f"  rank {r}: {c} candidates, busy {b:.1f} s of {ranks['wall_seconds']:.1f} s ({100 * b / ranks['wall_seconds']:.0f}%)")
def med(k): return statistics.median(e[k] for e in cand)
tot = med("seconds")
print(f"per candidate (median of {len(cand)}): {tot:.2f} s = pruning {med('prune_s'):.3f} s"
      f" + tau steps {med('train_s'):.2f} s + validation {med('val_s'):.2f} s")
EOF
