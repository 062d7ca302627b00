#!/bin/sh
# examples/slurm/submit.sh: the whole workflow, submitted in order from the
# repository's top directory (sh examples/slurm/submit.sh):
#   1. the patching sweep as an array of SHARDS tasks, one database each;
#   2. the ACDC grid, one task per (threshold, task);
#   3. each merge as a job that starts when every task of its array has
#      ended (--dependency=afterany:ARRAY_JOB_ID; merge.sbatch says why not
#      afterok) and checks that they all finished.
# Then: results/patch.db holds the whole sweep as one run and
# results/acdc.db every ACDC run; `mech db --db results/acdc.db ls`.
# Settings (environment): MODEL, SHARDS (8), DATASET, N, SWEEP, TAUS, TASKS,
# OUT (results); see the .sbatch files.
set -eu
HERE=$(dirname "$0")
export OUT=${OUT:-results}
shards=${SHARDS:-8}
set -- $(echo ${TAUS:-0.01 0.03 0.1}); ntaus=$#
set -- $(echo ${TASKS:-ioi greater_than induction}); ntasks=$#
patch=$(sbatch --parsable --array=0-$((shards - 1)) "$HERE/patch_array.sbatch")
acdc=$(sbatch --parsable --array=0-$((ntaus * ntasks - 1)) "$HERE/acdc_array.sbatch")
# --parsable prints JOBID or JOBID;CLUSTER: the id is before any ';'
patch=${patch%%;*} acdc=${acdc%%;*}
merge1=$(sbatch --parsable --dependency=afterany:$patch "$HERE/merge.sbatch" "$OUT/patch" $shards join)
merge2=$(sbatch --parsable --dependency=afterany:$acdc "$HERE/merge.sbatch" "$OUT/acdc" $((ntaus * ntasks)))
echo "patch sweep: array job $patch ($shards shards) -> merge job ${merge1%%;*} -> $OUT/patch.db"
echo "acdc grid:   array job $acdc ($ntaus thresholds x $ntasks tasks) -> merge job ${merge2%%;*} -> $OUT/acdc.db"
