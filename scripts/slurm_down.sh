#!/usr/bin/env bash
# Stop only the daemons slurm_up.sh started (PIDs recorded in $SLURM_DIR/pids): the Slurm daemons together
# first, then the databases and munged they depend on. SIGKILL after 10 s.
SLURM_DIR=${SLURM_DIR:-/tmp/slurm-ci}
stop() {
  local pids=() f p
  for f in "$@"; do p="$SLURM_DIR/pids/$f"; [ -s "$p" ] && pids+=("$(cat "$p")") && rm -f "$p"; done
  [ ${#pids[@]} = 0 ] && return
  kill "${pids[@]}" 2>/dev/null || true
  alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
  for i in $(seq 50); do alive || break; sleep 0.2; done
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null; done
  return 0
}
stop slurmd.bgpid slurmctld.bgpid slurmdbd.bgpid
stop mariadbd.pid munged.pid
exit 0
