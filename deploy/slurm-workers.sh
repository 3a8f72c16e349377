#!/bin/bash
# facelab sweep workers as a SLURM job array: each array task is one `facelab worker` loop
# against the shared PostgreSQL store, ending when the queue has stayed empty for two minutes.
# Queue the sweep first, then submit:
#   facelab --store "$FACELAB_STORE" sweep experiments/sweeps/recommended.yaml --queue-only
#   FACELAB_STORE=postgres://facelab@db.lab/facelab sbatch --array=1-8 deploy/slurm-workers.sh
# (sbatch passes the submitting shell's environment, FACELAB_STORE included, to every task.)
# Every node needs the workspace's facedata/ as it was when the sweep was queued (a shared
# filesystem is simplest); each task keeps its feature cache in its own models/ folder.
#SBATCH --job-name=facelab-workers
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=12:00:00
#SBATCH --output=facelab-worker-%A_%a.log
set -euo pipefail
: "${FACELAB_STORE:?set FACELAB_STORE to the postgres:// URL of the shared store}"
workspace=${FACELAB_WORKSPACE:-$PWD}
models="${TMPDIR:-/tmp}/facelab-models-${SLURM_ARRAY_JOB_ID}-${SLURM_ARRAY_TASK_ID}"
mkdir -p "$models"
# The task's own models/ (feature cache) beside a read-only view of the shared workspace.
task_ws="$models/workspace"
mkdir -p "$task_ws"
ln -sfn "$workspace/facedata" "$task_ws/facedata"
ln -sfn "$workspace/experiments" "$task_ws/experiments"
exec facelab --workspace "$task_ws" worker --idle-exit 120
