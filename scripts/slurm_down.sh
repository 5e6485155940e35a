#!/usr/bin/env bash
# Stop only the daemons slurm_up.sh started (PIDs recorded in $SLURM_DIR/pids), newest first.
SLURM_DIR=${SLURM_DIR:-/tmp/slurm-ci}
for f in slurmd.bgpid slurmctld.bgpid slurmdbd.bgpid mariadbd.pid munged.pid; do
  p="$SLURM_DIR/pids/$f"; [ -s "$p" ] || continue
  pid=$(cat "$p"); kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  rm -f "$p"
done
