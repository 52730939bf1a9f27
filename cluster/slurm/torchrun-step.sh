# The body of s2s.sbatch, gan.sbatch and preflight.sbatch (sourced by them, after their site-specific
# lines and JOB).
#
# One multi-node training job: srun starts one torchrun per node; torchrun starts one process per
# replica and they meet at the first node (c10d rendezvous). The batch script's arguments go to the
# job. Preemption: Slurm signals USR1 120 s ahead (and TERM on scancel); this shell forwards it to
# the job, which checkpoints at the next step and exits; then the job requeues itself, and the rerun
# resumes from that checkpoint (--resume auto in the same run directory, named by the job id).
set -uo pipefail
JOB=${JOB:?set by s2s.sbatch, gan.sbatch or preflight.sbatch}
cd "${SLURM_SUBMIT_DIR:-.}"
[ -f "$VENV/bin/activate" ] && source "$VENV/bin/activate"
PYTHON=${PYTHON:-python}

head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
head_addr=$(scontrol show node "$head_node" | grep -o 'NodeAddr=[^ ]*' | cut -d= -f2)
rdzv_port=${RDZV_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
if [ "$GPUS_PER_NODE" -gt 0 ]; then nproc=$((GPUS_PER_NODE / DEVICES_PER_REPLICA)); else nproc=$NPROC_PER_NODE; fi
run_dir=${RUN_DIR:-runs/slurm/$SLURM_JOB_NAME-$SLURM_JOB_ID}
echo "batch: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NODELIST," \
  "head $head_addr:$rdzv_port, $nproc process(es) per node, run dir $run_dir"

if [ "$JOB" = preflight ]; then  # a measurement: nothing to resume; the replicas laid out as the job's
  job_flags=(--run-dir "$run_dir" --devices-per-replica "$DEVICES_PER_REPLICA")
else
  job_flags=(--run-dir "$run_dir" --resume auto)
fi

# torchrun --max-restarts: workers of a restarted group must not share the rendezvous store with the
# agent, or they can read their peers' addresses from the previous attempt (pytorch/pytorch#135712)
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1

stop_requested=""
forward() {  # the batch shell alone gets --signal=B:...; the job's processes hear it from srun
  stop_requested=$1
  echo "batch: SIG$1 received: the job checkpoints and stops" >&2
  kill -"$1" "$step" 2>/dev/null
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

# one torchrun per node of this allocation, said explicitly: a job requeued onto fewer nodes
# (scontrol update NumNodes=...) keeps its first submission's SLURM_NTASKS, which srun would follow
srun --kill-on-bad-exit=1 --nodes "$SLURM_NNODES" --ntasks "$SLURM_NNODES" --ntasks-per-node 1 \
  "$PYTHON" -m torch.distributed.run \
  --nnodes "$SLURM_NNODES" --nproc_per_node "$nproc" \
  --rdzv_backend c10d --rdzv_endpoint "$head_addr:$rdzv_port" --rdzv_id "$SLURM_JOB_ID" \
  --signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \
  -m launcher.main "$JOB" "${job_flags[@]}" "$@" &
step=$!
while :; do  # bash runs a trap only once wait returns: wait again until the step has ended
  wait "$step"
  status=$?
  kill -0 "$step" 2>/dev/null || break
done

if [ -n "$stop_requested" ]; then
  echo "batch: checkpointed on SIG$stop_requested; requeueing job $SLURM_JOB_ID" >&2
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit "$status"
