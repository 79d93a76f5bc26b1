#!/usr/bin/env bash
# Run one job config from a fixed base network at several seeds and compare the families: the evidence that the learned ranking pays.
#
# usage: tools/evidence.sh CONFIG BASE.h5 SEED [SEED ...]
#
# For every SEED, a copy of CONFIG with run.seed = SEED, run.name = "<name>-seed<SEED>" and
# model.init = BASE.h5 (so every seed prunes the same trained network; the seed drives the
# search, the random baseline and the fine-tuning) runs under
#   ${MPIRUN:-mpirun} -np ${NP:-2} ${LEGR_BIN:-build/legr-mpi}
# in run.out_dir; a seed whose family.h5 exists is not run again, and one with a search.h5 is
# resumed, so the script can be restarted after a crash or time limit. Finally
# tools/compare_family.py summarises the family files (mean ± sd per method and level, paired
# differences, and with --widths what each method pruned at each level) into
# <out_dir>/<name>-evidence.md and plots them to <out_dir>/<name>-evidence.png.
#
# CONFIG must set run.name, run.seed and model.init (any value) on lines of their own, as the
# configs in configs/ do; the family's baselines come from CONFIG's family.baselines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
if [[ $# -lt 3 || $1 == -h || $1 == --help ]]; then
    sed -n '3,17p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -ge 1 && ( $1 == -h || $1 == --help ) ]] && exit 0
    exit 2
fi
config=$1 base=$2
shift 2
for f in "$config" "$base"; do
    [[ -r $f ]] || { echo "evidence: error: $f: not readable" >&2; exit 2; }
done
base=$(cd "$(dirname "$base")" && pwd)/$(basename "$base")
bin=${LEGR_BIN:-$here/../build/legr-mpi}
[[ -x $bin ]] || { echo "evidence: error: $bin: no legr-mpi binary (make build, or set LEGR_BIN)" >&2; exit 2; }

# The config with run.seed, run.name and model.init replaced; "name out_dir" on stdout.
derive() { # CONFIG SEED OUT
    "$PYTHON" - "$@" "$base" <<'PY'
import re, sys
src, seed, out, base = sys.argv[1:5]
text = open(src).read()
def group(name):
    m = re.search(r"^%s\s*[:=]\s*\{(.*?)^\};" % name, text, re.S | re.M)
    if not m:
        sys.exit("evidence: error: %s: no %s group" % (src, name))
    return m
def key(gname, k):
    m = re.search(r"^(\s*%s\s*=\s*)(.*?);" % k, group(gname).group(1), re.M)
    if not m:
        sys.exit("evidence: error: %s: %s.%s is not set on a line of its own" % (src, gname, k))
    return m
def replace(gname, k, value):
    global text
    g = group(gname)
    m = key(gname, k)
    start = g.start(1) + m.start(2)
    text = text[:start] + value + text[g.start(1) + m.end(2):]
name = key("run", "name").group(2).strip().strip('"') + "-seed" + seed
out_dir = key("run", "out_dir").group(2).strip().strip('"') if re.search(
    r"^\s*out_dir\s*=", group("run").group(1), re.M) else "runs"
replace("run", "seed", seed)
replace("run", "name", '"%s"' % name)
replace("model", "init", '"%s"' % base)
open(out, "w").write(text)
print(name, out_dir)
PY
}

families=()
for seed in "$@"; do
    [[ $seed =~ ^[0-9]+$ ]] || { echo "evidence: error: seed '$seed' is not a non-negative integer" >&2; exit 2; }
    cfg=$(mktemp --suffix=.cfg)
    read -r name out_dir < <(derive "$config" "$seed" "$cfg")
    run=$out_dir/$name
    mkdir -p "$run"
    mv "$cfg" "$run/job.cfg"
    families+=("$run/family.h5")
    if [[ -s $run/family.h5 ]]; then
        echo "evidence: seed $seed: $run/family.h5 exists, not run again" >&2
        continue
    fi
    resume=()
    [[ -s $run/search.h5 ]] && resume=(--resume "$run/search.h5")
    echo "evidence: seed $seed: $run (${NP:-2} ranks)" >&2
    ${MPIRUN:-mpirun} -np "${NP:-2}" "$bin" "${resume[@]}" "$run/job.cfg"
done
prefix=$out_dir/$(basename "${name%-seed*}")-evidence
"$PYTHON" "$here/compare_family.py" --markdown --widths -o "$prefix.png" "${families[@]}" | tee "$prefix.md"
echo "evidence: wrote $prefix.md and $prefix.png" >&2
