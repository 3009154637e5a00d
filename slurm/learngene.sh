#!/bin/bash
# Learngene stage on Slurm: DeepSpeed (ZeRO) soft distillation of the Aux-Net.
#
#   sbatch slurm/learngene.sh [RECIPE.yaml] [key.sub=value ...]
#
# The #SBATCH lines below are defaults for a GPU cluster (2 nodes x 8 GPUs). Override
# any of them on the command line, which beats the environment, which beats this header:
#   sbatch --nodes=4 --time=2-00:00:00 slurm/learngene.sh configs/paper/RECIPE.yaml
#   # CPU-only allocation (how the tests run it on the local cluster):
#   sbatch --nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 \
#          slurm/learngene.sh configs/cpu/RECIPE.yaml train.max_steps=20
# sbatch's own environment variables also work: SBATCH_TIMELIMIT, SBATCH_GPUS_PER_NODE,
# SBATCH_SIGNAL, SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_QOS, SBATCH_NO_REQUEUE.
#
# Environment read by this script (sbatch passes the submitting shell's environment):
#   TLEG_RECIPE     recipe when no positional one is given
#   TLEG_RUNS_ROOT  where run folders go (default runs/); the run folder is
#                   $TLEG_RUNS_ROOT/<job name>-<job id>: a requeued job keeps its id, so it
#                   resumes into the same folder
#   TLEG_RUN_DIR    an explicit run folder instead (e.g. to continue an earlier job's run)
#   TLEG_DS_CONFIG  DeepSpeed config (e.g. configs/ds/zero2.json) instead of the recipe's
#   TLEG_LAUNCH     srun (default: one Slurm task per rank), torchrun or deepspeed
#                   (one task per node, that launcher starts the node's ranks)
#   TLEG_PYTHON     interpreter (default: `python` on PATH)
#   TLEG_REPO       checkout holding tleg_dist/ (default: the submit directory)
#   TLEG_ENTRY      the script each rank runs (default tleg_dist/train.py; the fault tests
#                   put tests/faults/driver.py here to slow steps down)
#   MASTER_PORT     rendezvous port (default: derived from the job id)
#
# A lost peer (a rank, its node or the network to it stopped answering): every surviving rank
# fails within train.collective_timeout_s and prints one line "[rank R on HOST] error:
# PeerLost: ...". A node that stops answering Slurm altogether ends the job NODE_FAIL and
# Slurm requeues it (--requeue); otherwise this script requeues the job itself, at most
# TLEG_PEER_REQUEUES times (default 3). Either way the next attempt resumes from the newest
# complete checkpoint once every node is back.
#
# Preemption and time limits: Slurm sends SIGUSR1 to every rank --signal seconds
# before the end; the trainer saves a checkpoint at the next step boundary, rank 0
# runs `scontrol requeue` (TLEG_REQUEUE=1) and the job starts again with
# `--resume auto` from that checkpoint.
#
#SBATCH --job-name=learngene
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=10
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
set -euo pipefail

die() { echo "learngene.sh: error: $*" >&2; exit 2; }

[[ -n ${SLURM_JOB_ID:-} ]] || die "run me with sbatch (or inside salloc)"
REPO=${TLEG_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$REPO"
[[ -f tleg_dist/train.py ]] || die "$REPO has no tleg_dist/train.py; set TLEG_REPO to the checkout"
ENTRY=${TLEG_ENTRY:-tleg_dist/train.py}
[[ -f $ENTRY ]] || die "TLEG_ENTRY=$ENTRY does not exist (relative paths are from $REPO)"

RECIPE=${TLEG_RECIPE:-}
if [[ $# -gt 0 && $1 != *=* ]]; then RECIPE=$1; shift; fi
[[ -n $RECIPE ]] || die "no recipe: pass it as the first argument or set TLEG_RECIPE"
[[ -f $RECIPE ]] || die "recipe $RECIPE does not exist (relative paths are from $REPO)"
PYTHON=${TLEG_PYTHON:-python}
command -v "$PYTHON" >/dev/null || die "no interpreter '$PYTHON'; activate the env or set TLEG_PYTHON"

RUN_DIR=${TLEG_RUN_DIR:-${TLEG_RUNS_ROOT:-runs}/${SLURM_JOB_NAME:-learngene}-$SLURM_JOB_ID}
mkdir -p "$RUN_DIR"
# From here every line (and every rank, labelled) goes to the run folder.
echo "learngene.sh: job $SLURM_JOB_ID logs to $RUN_DIR/job.log"
exec >>"$RUN_DIR/job.log" 2>&1
echo "=== $(date -Is) job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST"

# Rendezvous from the allocation: the first node hosts rank 0; the port is a function
# of the job id, so concurrent jobs sharing a node do not collide and a requeue reuses it.
export MASTER_ADDR=${MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)}
export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 40000))}
export TLEG_REQUEUE=1
export TLEG_LAUNCH=${TLEG_LAUNCH:-srun}
NNODES=${SLURM_JOB_NUM_NODES:-1}
NTASKS=${SLURM_NTASKS:-1}
export PER_NODE=$((NTASKS / NNODES))
# Threads per rank = the CPUs Slurm gave each task (torch would otherwise take every core).
if [[ -z ${OMP_NUM_THREADS:-} && -n ${SLURM_CPUS_PER_TASK:-} && $TLEG_LAUNCH == srun ]]; then
    export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
fi
ARGS=(--config "$RECIPE" --resume auto)
[[ -n ${TLEG_DS_CONFIG:-} ]] && ARGS+=(--deepspeed_config "$TLEG_DS_CONFIG")
ARGS+=("$@" "output_dir=$RUN_DIR")
echo "recipe=$RECIPE nodes=$NNODES ranks=$NTASKS master=$MASTER_ADDR:$MASTER_PORT launch=$TLEG_LAUNCH"

LOG_START=$(stat -c %s "$RUN_DIR/job.log")
set +e  # the ranks' status is handled below
case $TLEG_LAUNCH in
    srun)
        # One Slurm task per rank; each task reads its own rank when it starts.
        # Slurm >= 22.05: srun no longer inherits --cpus-per-task from sbatch; pass it on.
        srun --kill-on-bad-exit=1 --label --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" bash -c '
            export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID
            export LOCAL_WORLD_SIZE=$(( SLURM_NTASKS / SLURM_JOB_NUM_NODES ))
            exec "$0" "$@"' "$PYTHON" "$ENTRY" "${ARGS[@]}"
        ;;
    torchrun | deepspeed)
        # DeepSpeed's runner refuses --num_nodes > 1 without a hostfile, even with --no_ssh: it
        # learns the hosts and their slots from it (one line per node of the allocation).
        export TLEG_HOSTFILE=$RUN_DIR/hostfile
        scontrol show hostnames "$SLURM_JOB_NODELIST" | sed "s/\$/ slots=$PER_NODE/" >"$TLEG_HOSTFILE"
        # One task per node; the per-node launcher must ignore SIGUSR1 (Slurm signals
        # every process of the step) while the ranks it starts catch it. An ignored
        # signal stays ignored across exec; the trainer installs its own handler.
        srun --kill-on-bad-exit=1 --label --ntasks="$NNODES" --ntasks-per-node=1 \
            --cpus-per-task=$(( ${SLURM_CPUS_PER_TASK:-1} * PER_NODE )) bash -c '
            trap "" USR1
            if [[ $TLEG_LAUNCH == torchrun ]]; then
                exec "$0" -m torch.distributed.run --nnodes="$SLURM_JOB_NUM_NODES" --node_rank="$SLURM_NODEID" \
                    --nproc_per_node="$PER_NODE" --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" "$@"
            else
                exec "$0" -m deepspeed.launcher.runner --no_ssh --hostfile="$TLEG_HOSTFILE" \
                    --num_nodes="$SLURM_JOB_NUM_NODES" --node_rank="$SLURM_NODEID" --num_gpus="$PER_NODE" \
                    --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" "$@"
            fi' "$PYTHON" "$ENTRY" "${ARGS[@]}"
        ;;
    *) die "TLEG_LAUNCH=$TLEG_LAUNCH: expected srun, torchrun or deepspeed" ;;
esac
rc=$?
set -e
echo "=== $(date -Is) ranks exited (status $rc)"
# srun's own status cannot say why (a killed peer reports 143): the ranks' lines can.
# (Not `tail | grep -q`: under pipefail, tail killed by SIGPIPE once grep is done fails the test.)
if ((rc != 0)) && grep -q '] error: PeerLost: ' < <(tail -c +"$((LOG_START + 1))" "$RUN_DIR/job.log"); then
    done_requeues=$(grep -c '^learngene.sh: requeued after a lost peer' "$RUN_DIR/job.log" || true)
    if ((done_requeues < ${TLEG_PEER_REQUEUES:-3})); then
        echo "learngene.sh: requeued after a lost peer ($((done_requeues + 1))/${TLEG_PEER_REQUEUES:-3});" \
             "the next attempt resumes from the newest complete checkpoint"
        scontrol requeue "$SLURM_JOB_ID" && exit 0
    fi
    echo "learngene.sh: lost a peer again; not requeued (TLEG_PEER_REQUEUES=${TLEG_PEER_REQUEUES:-3} used up)"
fi
exit "$rc"
