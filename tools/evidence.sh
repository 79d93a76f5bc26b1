#!/usr/bin/env bash
# Run one job config from a fixed base network at several seeds and compare the families: the evidence that the learned ranking pays.
#
# usage: tools/evidence.sh [--name NAME] [--set GROUP.KEY=VALUE]... [--baselines-from NAME]
#                          CONFIG BASE.h5 SEED [SEED ...]
#
# For every SEED, a copy of CONFIG with run.seed = SEED, run.name = "<name>-seed<SEED>" and
# model.init = BASE.h5 (so every seed prunes the same trained network; the seed drives the
# search, the random baseline and the fine-tuning, while the validation split stays the one
# BASE.h5 was pretrained with: data.split_seed = -1) runs under
#   ${MPIRUN:-mpirun} -np ${NP:-2} ${LEGR_BIN:-build/legr-mpi}
# in run.out_dir; a seed whose family.h5 exists is not run again, and one with a search.h5 is
# resumed, so the script can be restarted after a crash or time limit. Finally
# tools/compare_family.py summarises the family files (mean ± sd per method and level, paired
# differences, and what each method pruned at each level) into <out_dir>/<name>-evidence.md and
# plots them to <out_dir>/<name>-evidence.png. A seed directory whose job.cfg differs from the
# config derived now is refused: its results would not be this config's.
#
# A variant of the search is one more call: --name gives it its own runs (<name> is CONFIG's
# run.name otherwise; --set needs --name), each --set replaces one key's one-line value in the
# copies (e.g. --set 'search.target_flops=[0.7, 0.5]' --set 'family.baselines=[]'; not
# run.name, run.seed or model.init), and --baselines-from NAME pairs the variant's LeGR levels
# with the baseline levels of <out_dir>/<NAME>-seed<SEED>/family.h5, the earlier run of the
# same seed.
#
# CONFIG must set run.name, run.seed, model.init (any value) and every --set key on lines of
# their own, as the configs in configs/ do.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
usage() { sed -n '3,27p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "evidence: error: $*" >&2; exit 2; }
variant_name= baselines_from=
sets=()
while [[ $# -gt 0 ]]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --name | --set | --baselines-from)
        [[ $# -ge 2 ]] || { echo "evidence: error: $1 needs a value" >&2; exit 2; }
        case $1 in
        --name) variant_name=$2 ;;
        --set) [[ $2 =~ ^[a-z_]+\.[a-z_]+=. ]] || die "--set '$2' is not GROUP.KEY=VALUE"
               case ${2%%=*} in
               run.name | run.seed | model.init) die "--set ${2%%=*}: evidence.sh sets that key itself" ;;
               esac
               sets+=("$2") ;;
        --baselines-from) baselines_from=$2 ;;
        esac
        shift 2 ;;
    -*) echo "evidence: error: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
[[ $# -ge 3 ]] || { usage >&2; exit 2; }
[[ ${#sets[@]} -eq 0 || -n $variant_name ]] ||
    die "--set changes the config: give the variant its own runs with --name"
[[ -z $baselines_from || $baselines_from != "$variant_name" ]] ||
    die "--baselines-from $baselines_from is the variant itself"
[[ -z $variant_name || $variant_name =~ ^[A-Za-z0-9._-]+$ ]] ||
    { echo "evidence: error: --name '$variant_name': use letters, digits, '.', '_', '-'" >&2; exit 2; }
config=$1 base=$2
shift 2
for f in "$config" "$base"; do
    [[ -r $f ]] || { echo "evidence: error: $f: not readable" >&2; exit 2; }
done
base=$(cd "$(dirname "$base")" && pwd)/$(basename "$base")
bin=${LEGR_BIN:-$here/../build/legr-mpi}
[[ -x $bin ]] || { echo "evidence: error: $bin: no legr-mpi binary (make build, or set LEGR_BIN)" >&2; exit 2; }

# The config with run.seed, run.name, model.init and the --set keys replaced; "name out_dir" on
# stdout.
derive() { # CONFIG SEED OUT
    "$PYTHON" - "$@" "$base" "$variant_name" "${sets[@]}" <<'PY'
import re, sys
src, seed, out, base, variant = sys.argv[1:6]
sets = sys.argv[6:]
text = open(src).read()
def group(name):
    m = re.search(r"^%s\s*[:=]\s*\{(.*?)^\};" % name, text, re.S | re.M)
    if not m:
        sys.exit("evidence: error: %s: no %s group" % (src, name))
    return m
def key(gname, k):
    m = re.search(r"^(\s*%s\s*=\s*)(.*?);" % k, group(gname).group(1), re.M)
    if not m:
        sys.exit("evidence: error: %s: no line of its own sets %s.%s (a one-line `%s = ...;` in "
                 "the %s group); add it there to replace it" % (src, gname, k, k, gname))
    return m
def replace(gname, k, value):
    global text
    g = group(gname)
    m = key(gname, k)
    start = g.start(1) + m.start(2)
    text = text[:start] + value + text[g.start(1) + m.end(2):]
for s in sets:
    gk, value = s.split("=", 1)
    replace(*gk.split("."), value.strip())
name = (variant or key("run", "name").group(2).strip().strip('"')) + "-seed" + seed
out_dir = key("run", "out_dir").group(2).strip().strip('"') if re.search(
    r"^\s*out_dir\s*=", group("run").group(1), re.M) else "runs"
replace("run", "seed", seed)
replace("run", "name", '"%s"' % name)
replace("model", "init", '"%s"' % base)
open(out, "w").write(text)
print(name, out_dir)
PY
}

# Every seed's config is derived and checked before any runs: a refusal never comes hours in.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
names=() families=()
for seed in "$@"; do
    [[ $seed =~ ^[0-9]+$ ]] || die "seed '$seed' is not a non-negative integer"
    info=$(derive "$config" "$seed" "$tmp/$seed.cfg") || exit 2
    read -r name out_dir <<<"$info"
    run=$out_dir/$name
    if [[ -e $run/job.cfg ]] && ! cmp -s "$tmp/$seed.cfg" "$run/job.cfg"; then
        die "$run/job.cfg holds another config than the one derived now (diff them); give this" \
            "variant its own --name"
    fi
    if [[ -n $baselines_from ]]; then
        other=$out_dir/$baselines_from-seed$seed/family.h5
        [[ -s $other ]] || die "--baselines-from: $other does not exist"
        families+=("$run/family.h5+$other")
    else
        families+=("$run/family.h5")
    fi
    names+=("$name")
done
i=0
for seed in "$@"; do
    run=$out_dir/${names[i]}
    i=$((i + 1))
    mkdir -p "$run"
    [[ -e $run/job.cfg ]] || cp "$tmp/$seed.cfg" "$run/job.cfg"
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
