#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's packages: for the tests of the SLURM path and
# for trying `vaebench train -m hydra/launcher=slurm ...` without a cluster.
#
#   scripts/slurm_local.sh start     # installs slurm-wlm and munge when missing (as root), starts the cluster
#   eval "$(scripts/slurm_local.sh env)"   # SLURM_CONF for sbatch, squeue, scontrol and vaebench
#   scripts/slurm_local.sh status    # sinfo
#   scripts/slurm_local.sh stop      # stops it and removes its state
#
# Everything lives in $VAEBENCH_SLURM_DIR (default /tmp/vaebench-slurm): slurm.conf, state, logs. One
# partition, `local`, with this machine's CPUs and memory; no cgroups (proctrack/linuxproc, task/none),
# so it runs in a container. Jobs may be requeued (JobRequeue=1), as on a preemptible partition.
set -euo pipefail

DIR="${VAEBENCH_SLURM_DIR:-/tmp/vaebench-slurm}"
CONF="$DIR/slurm.conf"

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  if [ "$(id -u)" != 0 ]; then
    echo "slurm_local.sh: slurm-wlm and munge are missing; install them as root (apt-get install slurm-wlm munge)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null; }
}

write_config() {
  local host cpus memory
  host="$(hostname -s)"
  cpus="$(nproc)"
  memory="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
  cat >"$CONF" <<EOF
ClusterName=vaebench
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
# Time limits are checked, and their signals sent, every few seconds: a short limit acts on time.
MinJobAge=60
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
}

start() {
  install_packages
  stop_daemons
  write_config
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge && dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chmod 400 /etc/munge/munge.key
  fi
  chown -R munge:munge /etc/munge 2>/dev/null || true
  mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  munged --force 2>/dev/null || su -s /bin/sh munge -c "munged --force"
  SLURM_CONF="$CONF" slurmctld
  SLURM_CONF="$CONF" slurmd
  for _ in $(seq 60); do
    if SLURM_CONF="$CONF" sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "A one-node SLURM cluster runs; before using it:  export SLURM_CONF=$CONF"
      return
    fi
    sleep 0.5
  done
  echo "slurm_local.sh: the cluster did not come up; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
  exit 1
}

stop_daemons() {
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid"; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  stop) stop_daemons; pkill -x munged 2>/dev/null || true; rm -rf "$DIR" ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  status) SLURM_CONF="$CONF" sinfo ;;
  *) echo "usage: scripts/slurm_local.sh start|stop|env|status" >&2; exit 2 ;;
esac
