#!/usr/bin/env bash
# Fuzz one target for SECONDS: run.sh TARGET SECONDS ($LEGR_FUZZ_SECONDS, when set, wins). New inputs go to a scratch corpus in the
# build (the seeds in corpus/TARGET are read, never written); a finding is saved as
# $LEGR_FUZZ_BUILD/TARGET-crash-* and fails the run. Prints executions and coverage at the end.
set -euo pipefail
target=$1 seconds=${LEGR_FUZZ_SECONDS:-$2}
here=$(cd "$(dirname "$0")" && pwd)
build=${LEGR_FUZZ_BUILD:-$PWD}
work=$build/corpus-$target
mkdir -p "$work"
log=$build/$target.log
# Inputs larger than the largest seed are rarely useful; CIFAR's seeds hold whole 3,073-byte
# records, so its limit is larger.
max_len=4096
[[ $target == fuzz_cifar ]] && max_len=16384
seeds=("$here/corpus/$target")
[[ $target == fuzz_config ]] && seeds+=("$here/../../configs") # the job files seed it too
status=0
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} LSAN_OPTIONS=suppressions=$here/lsan.supp \
"$build/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=$max_len -print_final_stats=1 -artifact_prefix="$build/$target-crash-" \
    "$work" "${seeds[@]}" >"$log" 2>&1 || status=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
echo "$target: ${execs:-?} executions in ${seconds}s, ${cov:-cov: ?} edges, corpus $(ls "$work" | wc -l) inputs"
if [[ $status -ne 0 ]]; then
    tail -n 60 "$log"
    echo "$target: FAILED (exit $status); the input is in $build/$target-crash-*" >&2
    exit 1
fi
