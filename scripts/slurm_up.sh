#!/usr/bin/env bash
# Bring up a single-node Slurm (munge + slurmctld + slurmd, optional mariadb + slurmdbd) on localhost,
# by hand, no systemd. Every daemon we start is recorded in $SLURM_DIR/pids and stopped by slurm_down.sh.
# Usage: SLURM_DIR=/tmp/slurm-ci FAKE_CPUS=4 bash scripts/slurm_up.sh ; then export SLURM_CONF=$SLURM_DIR/slurm.conf
# Knobs: FAKE_CPUS (advertise N CPUs so N array tasks run at once), SLURMCTLD_PORT / SLURMD_PORT (defaults 6817/6818),
#        WITH_DBD=1 (real sacct through mariadb + slurmdbd).
set -euo pipefail
SLURM_DIR=${SLURM_DIR:-/tmp/slurm-ci}
WITH_DBD=${WITH_DBD:-0}
CTLD_PORT=${SLURMCTLD_PORT:-6817}
D_PORT=${SLURMD_PORT:-6818}
export DEBIAN_FRONTEND=noninteractive
PKGS="slurmctld slurmd slurm-client munge"
[ "$WITH_DBD" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
if ! dpkg -s $PKGS >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
fi
rm -rf "$SLURM_DIR"; mkdir -p "$SLURM_DIR"/{state,spool,pids}

# --- munge (shared by every Slurm on this box: reuse a running munged, record it only if we start it) ---
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 0755 /run/munge
[ -s /etc/munge/munge.key ] || { mungekey -c -k /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for i in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
  cp /run/munge/munged.pid "$SLURM_DIR/pids/munged.pid"
fi

# --- slurm.conf: node named localhost (slurmd -N localhost), independent of the box's hostname ---
read -r CPUS SOCK CORES THREADS MEM < <(slurmd -C | head -1 | sed -E 's/.*CPUs=([0-9]+).*SocketsPerBoard=([0-9]+) CoresPerSocket=([0-9]+) ThreadsPerCore=([0-9]+) RealMemory=([0-9]+).*/\1 \2 \3 \4 \5/')
OVR=""
if [ -n "${FAKE_CPUS:-}" ]; then CPUS=$FAKE_CPUS; SOCK=1; CORES=$FAKE_CPUS; THREADS=1; OVR="SlurmdParameters=config_overrides"; fi
ACCT="AccountingStorageType=accounting_storage/none"
[ "$WITH_DBD" = 1 ] && ACCT=$'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nAccountingStoragePort=6819'
cat > "$SLURM_DIR/slurm.conf" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it starts again (default 120): long for a one-node box whose
# step credentials are used within seconds
AuthInfo=cred_expire=30
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
$ACCT
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_DIR/jobcomp.txt
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
MinJobAge=600
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/pids/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/pids/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdLogFile=$SLURM_DIR/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS SocketsPerBoard=$SOCK CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$((MEM - 1024)) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
$OVR
CONF
export SLURM_CONF="$SLURM_DIR/slurm.conf"

# --- optional accounting: mariadb + slurmdbd (slurmdbd.conf next to slurm.conf, mode 600) ---
if [ "$WITH_DBD" = 1 ]; then
  mkdir -p /run/mysqld && chown mysql:root /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 >"$SLURM_DIR/mariadb.out" 2>&1 < /dev/null &
  echo $! > "$SLURM_DIR/pids/mariadbd.pid"
  for i in $(seq 100); do mariadb -uroot -e 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
  mariadb -uroot -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  cat > "$SLURM_DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$SLURM_DIR/slurmdbd.log
PidFile=$SLURM_DIR/pids/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$SLURM_DIR/slurmdbd.conf"
  setsid /usr/sbin/slurmdbd -D >"$SLURM_DIR/slurmdbd.out" 2>&1 < /dev/null &
  echo $! > "$SLURM_DIR/pids/slurmdbd.bgpid"
  for i in $(seq 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
  sacctmgr -i add cluster ci >/dev/null 2>&1 || true
fi

# --- the two Slurm daemons, in the foreground of their own session (setsid), PIDs recorded ---
setsid /usr/sbin/slurmctld -D >"$SLURM_DIR/slurmctld.out" 2>&1 < /dev/null &
echo $! > "$SLURM_DIR/pids/slurmctld.bgpid"
for i in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
setsid /usr/sbin/slurmd -D -N localhost >"$SLURM_DIR/slurmd.out" 2>&1 < /dev/null &
echo $! > "$SLURM_DIR/pids/slurmd.bgpid"
for i in $(seq 150); do sinfo -h -o %t 2>/dev/null | grep -qx idle && break; sleep 0.2; done
sinfo -h -o %t | grep -qx idle || { echo "slurm node did not become idle"; tail -5 "$SLURM_DIR"/slurm*.out; exit 1; }
sinfo
echo "export SLURM_CONF=$SLURM_CONF"
