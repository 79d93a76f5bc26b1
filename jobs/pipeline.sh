#!/usr/bin/env bash
# Submit the whole legr-mpi pipeline to SLURM: the search job, then the family job once the search has succeeded.
#
# usage: jobs/pipeline.sh job.cfg
#
# Submits jobs/search.sbatch with LEGR_SEARCH_ONLY=1 (base network and search; it checkpoints,
# requeues itself at its time limit and resumes until the search is finished), then
# jobs/family.sbatch with --dependency=afterok:<search job>, so the family starts only after the
# search job has ended with exit code 0 (a requeued search job keeps it waiting; a failed one
# cancels it: --kill-on-invalid-dep=yes). Run it from the directory the config's run.out_dir is
# relative to. Prints the two job ids (also as the last line "SEARCH_ID FAMILY_ID").
#
# Environment:
#   LEGR_SEARCH_SBATCH_ARGS   extra sbatch options for the search job, split on spaces
#                             (e.g. "--ntasks=32 --time=12:00:00 --signal=B:USR1@600")
#   LEGR_FAMILY_SBATCH_ARGS   extra sbatch options for the family job (e.g. "--ntasks=12")
#   and everything jobs/search.sbatch reads (LEGR_BIN, LEGR_MPIRUN, LEGR_MPIRUN_ARGS, ...),
#   which sbatch passes on to both jobs.
# Exit codes: 0 both submitted; 2 usage; 1 sbatch failed.
set -euo pipefail

cfg=${1:-}
if [[ -z $cfg || ! -f $cfg ]]; then
    sed -n '4p' "$0" >&2
    echo "pipeline.sh: give an existing job config" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
read -r -a search_args <<<"${LEGR_SEARCH_SBATCH_ARGS:-}"
read -r -a family_args <<<"${LEGR_FAMILY_SBATCH_ARGS:-}"

sid=$(LEGR_SEARCH_ONLY=1 sbatch --parsable "${search_args[@]}" "$here/search.sbatch" "$cfg")
sid=${sid%%;*}
fid=$(sbatch --parsable --dependency="afterok:$sid" --kill-on-invalid-dep=yes \
      "${family_args[@]}" "$here/family.sbatch" "$cfg")
fid=${fid%%;*}
echo "pipeline.sh: search job $sid, family job $fid (starts after $sid succeeds)"
echo "$sid $fid"
