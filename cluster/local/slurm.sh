#!/usr/bin/env bash
# A real Slurm on one machine without systemd, for tests and for trying the batch scripts:
# munge + slurmctld + NODES slurmd daemons on localhost, each a simulated node (n1, n2, ...).
#
#   cluster/local/slurm.sh install        Debian packages (as root; ~20 s)
#   cluster/local/slurm.sh start          daemons up, nodes idle; prints the SLURM_CONF to export
#   cluster/local/slurm.sh stop           every daemon down
#   cluster/local/slurm.sh env            the line to eval: export SLURM_CONF=...
#
# Environment: BASE (state folder; default runs/local-slurm), NODES (default 2), CTLD_PORT
# (default 6817), SLURMD_PORT0 (first slurmd port, default 17001), CPUS (per node; default nproc),
# MEM_MB (per node; default 2000), MUNGE_RUN (munged's socket folder; default
# /tmp/dist-train-munge-$CTLD_PORT). Every Slurm command needs SLURM_CONF exported (else it tries a
# DNS look-up for the controller and fails).
set -euo pipefail
BASE=$(realpath -m "${BASE:-runs/local-slurm}")
NODES=${NODES:-2}
CTLD_PORT=${CTLD_PORT:-6817}
SLURMD_PORT0=${SLURMD_PORT0:-17001}
CPUS=${CPUS:-$(nproc)}
MEM_MB=${MEM_MB:-2000}
export SLURM_CONF=$BASE/slurm.conf
# munged wants every folder above its socket reachable by all: not the case under pytest's tmp folders
MUNGE_RUN=${MUNGE_RUN:-/tmp/dist-train-munge-$CTLD_PORT}
SOCKET=$MUNGE_RUN/munge.socket.2

poll() {  # poll <tries of 0.1 s> <command...>
  local tries=$1; shift
  for _ in $(seq 1 "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

install() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sbatch >/dev/null; then
    echo "slurm and munge: already installed"; return 0
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
  echo "slurm and munge: installed"
}

write_conf() {
  local last=$((SLURMD_PORT0 + NODES - 1))
  cat >"$SLURM_CONF" <<CONF
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
SlurmctldPort=$CTLD_PORT
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool/%n
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd-%n.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd-%n.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=30
JobRequeue=1
NodeName=n[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=[$SLURMD_PORT0-$last] CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
}

start() {
  mkdir -p "$BASE"/munge/{etc,log,lib} "$BASE"/{state,spool,run,log} "$MUNGE_RUN"
  chmod 0755 "$MUNGE_RUN"                # munged's socket folder must be reachable
  chmod 0700 "$BASE"/munge/{etc,log,lib} # and its key folder private
  [ -f "$BASE/munge/etc/munge.key" ] || mungekey --create --keyfile="$BASE/munge/etc/munge.key"
  munged --socket="$SOCKET" --key-file="$BASE/munge/etc/munge.key" --log-file="$BASE/munge/log/munged.log" \
    --pid-file="$MUNGE_RUN/munged.pid" --seed-file="$BASE/munge/lib/munged.seed"
  munge -n --socket="$SOCKET" | unmunge --socket="$SOCKET" >/dev/null
  write_conf
  slurmctld -f "$SLURM_CONF"
  for i in $(seq 1 "$NODES"); do slurmd -f "$SLURM_CONF" -N "n$i"; done
  if ! poll 300 bash -c "[ \"\$(sinfo -h -o '%T %D')\" = 'idle $NODES' ]"; then
    sinfo || true; tail -n 20 "$BASE"/log/*.log; return 1
  fi
  echo "slurm: $NODES node(s) idle; export SLURM_CONF=$SLURM_CONF"
}

stop() {
  local pids=""
  for f in "$BASE"/run/*.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
  scontrol shutdown >/dev/null 2>&1 || true   # slurmctld and every slurmd
  for p in $pids; do poll 100 bash -c "! kill -0 $p" || kill -9 "$p" 2>/dev/null || true; done
  [ -f "$MUNGE_RUN/munged.pid" ] && kill "$(cat "$MUNGE_RUN/munged.pid")" 2>/dev/null || true
  rm -rf "$BASE/state" "$BASE/spool" "$BASE/run" "$MUNGE_RUN"
  echo "slurm: stopped"
}

print_env() { echo "export SLURM_CONF=$SLURM_CONF"; }

case "${1:-}" in
  install | start | stop) "$1" ;;
  env) print_env ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
