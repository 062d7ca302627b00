#!/bin/bash
# tests/slurm/cluster.sh: examples/slurm/ on a real Slurm. Starts a
# one-node cluster on this machine from Debian's slurm-wlm and munge
# (munged with a key made here, slurmctld and slurmd on 127.0.0.1 with free
# ports, a generated slurm.conf, every state, spool, socket and log file in
# a temporary folder), then:
#   A. a 4-task patching array (--array=2-8:2: an offset and a step) and the
#      merge as a dependent job: the joined database equals one unsharded
#      run row for row;
#   B. the ACDC grid (2 thresholds x 2 tasks) and its merge: each run's
#      results equal the same ACDC run made directly;
#   C. a task killed midway and requeued (scontrol requeue) resumes its
#      shard: no pair lost or run twice, and the dependent merge's join still
#      equals the unsharded run.
# Every daemon it started is stopped on exit (trap), by its pid.
# Needs root (slurmd runs jobs as their user; SlurmUser=root) and the
# packages; when either is missing it fails saying so, as CI runs as root.
# Run by tests/test_cli_slurm.c; alone: MECH_BIN=./mech bash tests/slurm/cluster.sh
# (MECH_SLURM_KEEP=1 keeps the temporary folder).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MECH=${MECH_BIN:-./mech}
case $MECH in /*) ;; *) MECH=$ROOT/${MECH#./} ;; esac
EX=$ROOT/examples/slurm
T0=$(date +%s)

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "[$(( $(date +%s) - T0 ))s] $*"; }

[ "$(id -u)" = 0 ] || fail "the Slurm test needs root (slurmd starts jobs as their user and SlurmUser=root); run make test as root, as CI does"
missing=""
for c in munged munge slurmctld slurmd sbatch squeue sinfo scontrol scancel sqlite3; do
  command -v $c >/dev/null 2>&1 || missing="$missing $c"
done
[ -z "$missing" ] || fail "missing commands:$missing (Debian packages slurm-wlm, munge, sqlite3: sh .ci/deps.sh installs them as root)"
[ -x "$MECH" ] || fail "no mech binary at $MECH (make first)"

# Short paths: a unix socket's path must stay under 108 bytes.
D=$(mktemp -d /tmp/mech-slurm.XXXXXX) || fail "mktemp"
chmod 755 "$D"
# The daemons' pids, read from their pid files once each has started.
DAEMONS=""
started() { # NAME PIDFILE
  for i in $(seq 1 50); do [ -s "$2" ] && break; sleep 0.1; done
  [ -s "$2" ] || fail "$1 wrote no pid file $2"
  DAEMONS="$DAEMONS $1:$(cat "$2")"
}
# Is pid $2 still the daemon $1 (not a process that took its pid since)?
is_daemon() { [ "$(cat /proc/$2/comm 2>/dev/null)" = "$1" ]; }
stop() { # the daemons this script started, by pid; SIGKILL after 5 s
  for d in $DAEMONS; do is_daemon ${d%%:*} ${d#*:} && kill ${d#*:} 2>/dev/null; done
  for i in $(seq 1 50); do
    alive=""
    for d in $DAEMONS; do is_daemon ${d%%:*} ${d#*:} && alive=1; done
    [ -z "$alive" ] && return
    sleep 0.1
  done
  for d in $DAEMONS; do is_daemon ${d%%:*} ${d#*:} && kill -9 ${d#*:} 2>/dev/null; done
}
cleanup() {
  st=$?
  # jobs first, so no slurmstepd outlives slurmd
  [ -f "$D/slurm.conf" ] && SLURM_CONF=$D/slurm.conf scancel --full --user=root >/dev/null 2>&1 &&
    for i in $(seq 1 30); do [ -z "$(SLURM_CONF=$D/slurm.conf squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
  stop
  if [ $st -ne 0 ]; then
    for f in "$D"/log/*.log "$D"/munge/log "$D"/work/*.out; do
      [ -f "$f" ] && { echo "--- $f (last lines)"; tail -n 15 "$f"; } >&2
    done
  fi
  [ "${MECH_SLURM_KEEP:-}" = 1 ] && echo "kept $D" >&2 || rm -rf "$D"
  exit $st
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# A port nothing listens on (/proc/net/tcp lists them in hex).
port_free() {
  ! grep -qi ":$(printf '%04X' "$1") " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
pick_port() {
  for i in $(seq 1 100); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
    port_free $p && port_free $((p + 1)) && { echo $p; return; }
  done
  fail "no free port pair"
}
PORT=$(pick_port)

# munge: a key made for this test, its own socket, pid, log and seed files.
mkdir -p "$D/munge" "$D/state" "$D/spool" "$D/log" "$D/work"
chmod 700 "$D/munge"
dd if=/dev/urandom bs=1 count=1024 of="$D/munge/key" 2>/dev/null
chmod 400 "$D/munge/key"
munged --force --key-file="$D/munge/key" --socket="$D/munge/sock" --pid-file="$D/munge/munged.pid" \
  --log-file="$D/munge/log" --seed-file="$D/munge/seed" || fail "munged did not start"
started munged "$D/munge/munged.pid"
chmod 755 "$D/munge" # clients (slurm's auth plugin) must reach the socket
munge -S "$D/munge/sock" -n </dev/null >/dev/null || fail "munge cannot encode with the test's munged"

cat >"$D/slurm.conf" <<EOF
ClusterName=mechtest
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/sock
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
KillWait=5
SchedulerParameters=batch_sched_delay=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$D/slurm.conf
# -i: no saved state to recover
slurmctld -f "$SLURM_CONF" -i || fail "slurmctld did not start"
started slurmctld "$D/slurmctld.pid"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
started slurmd "$D/slurmd.pid"
for i in $(seq 1 100); do
  [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break
  [ $i = 100 ] && fail "the node did not become idle in 10 s: $(sinfo 2>&1)"
  sleep 0.1
done
note "cluster up: slurmctld on port $PORT, node idle"

cd "$D/work" || fail "cd"
export MECH
# Waits for jobs to leave the queue (at most $2 s).
wait_jobs() {
  for i in $(seq 1 $(( $2 * 10 ))); do
    [ -z "$(squeue -h -j "$1" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  fail "jobs $1 still queued after $2 s: $(squeue 2>&1)"
}
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1; }
# One run's results, ordered, with every digit of each value; but the time
# an ACDC run took (metric 'seconds'), which no two runs share.
rows() {
  sqlite3 -readonly "$1" "select item, site, layer, pos, head, token, rank, metric, printf('%.17g', value)
    from results where run_id = $2 and metric != 'seconds'
    order by item, site, layer, pos, head, token, rank, metric, value"
}
same_rows() { # DB1 RUN1 DB2 RUN2 WHAT
  rows "$1" "$2" >a.rows; rows "$3" "$4" >b.rows
  [ -s a.rows ] || fail "$5: no rows in $1 run $2"
  cmp -s a.rows b.rows || fail "$5: $1 run $2 and $3 run $4 differ ($(wc -l <a.rows) vs $(wc -l <b.rows) rows): $(diff a.rows b.rows | head -n 4)"
}

# --- A: the patching array and the dependent merge ---------------------------
"$MECH" init -o tiny.safetensors --layers 2 --heads 2 --d-model 16 --d-head 8 --d-mlp 32 --vocab 60 --n-ctx 32 \
  --seed 3 >/dev/null || fail "mech init"
patch_args="--dataset induction --n 10 --len 4 --sweep heads"
"$MECH" patch --model tiny.safetensors $patch_args --db ref_a.db >/dev/null 2>&1 || fail "the unsharded run"
a=$(MODEL=tiny.safetensors DATASET=induction N=10 SWEEP=heads OUT=a EXTRA="--len 4" \
    sbatch --parsable --array=2-8:2 "$EX/patch_array.sbatch") || fail "sbatch the array"
m=$(sbatch --parsable --dependency=afterany:$a "$EX/merge.sbatch" a/patch 4 join) || fail "sbatch the merge"
note "A: array job $a (--array=2-8:2), merge job $m"
wait_jobs "$a,$m" 120
[ "$(state $m)" = COMPLETED ] || fail "A: the merge job is $(state $m): $(cat slurm-$m.out 2>&1)"
for t in 2 4 6 8; do
  grep -q "array task $t of 2-8:2 is shard $(( t / 2 ))/4" slurm-${a}_$t.out ||
    fail "A: task $t's log: $(cat slurm-${a}_$t.out)"
done
same_rows a/patch.db 1 ref_a.db 1 "A: the joined shards and the unsharded run"
[ "$(sqlite3 -readonly a/patch.db 'select count(*) || status from runs')" = 1done ] || fail "A: a/patch.db runs"
note "A: 4 shards joined = the unsharded run ($(wc -l <a.rows) rows)"

# --- B: the ACDC grid (thresholds x tasks) and its merge ---------------------
"$MECH" init -o gpt2ish.safetensors --layers 2 --heads 2 --d-model 16 --d-head 8 --d-mlp 32 --vocab 50257 \
  --n-ctx 64 --seed 1 >/dev/null || fail "mech init (GPT-2 vocabulary)"
b=$(MODEL=gpt2ish.safetensors TAUS="1e-5 1e-3" TASKS="ioi induction" N=4 OUT=b \
    sbatch --parsable --array=0-3 --cpus-per-task=1 "$EX/acdc_array.sbatch") || fail "sbatch the ACDC grid"
mb=$(sbatch --parsable --dependency=afterany:$b "$EX/merge.sbatch" b/acdc 4) || fail "sbatch the ACDC merge"
note "B: ACDC grid job $b, merge job $mb"
# the reference runs, made directly while the grid runs
for task in ioi induction; do
  for tau in 1e-5 1e-3; do
    "$MECH" acdc --model gpt2ish.safetensors --dataset $task --n 4 --tau $tau --db ref_b.db >/dev/null 2>&1 ||
      fail "B: acdc $task $tau directly"
  done
done
wait_jobs "$b,$mb" 120
[ "$(state $mb)" = COMPLETED ] || fail "B: the merge job is $(state $mb): $(cat slurm-$mb.out 2>&1)"
[ "$(sqlite3 -readonly b/acdc.db "select count(*) from runs where kind = 'acdc' and status = 'done'")" = 4 ] ||
  fail "B: b/acdc.db: $(sqlite3 -readonly b/acdc.db 'select id, kind, status from runs')"
for task in ioi induction; do
  for tau in 1e-5 1e-3; do
    q="select id from runs where json_extract(params, '\$.dataset') = '$task' and json_extract(params, '\$.tau') = $tau"
    got=$(sqlite3 -readonly b/acdc.db "$q") ref=$(sqlite3 -readonly ref_b.db "$q")
    [ -n "$got" ] && [ "$(echo "$got" | wc -l)" = 1 ] || fail "B: ($task, $tau) in b/acdc.db: '$got'"
    same_rows b/acdc.db "$got" ref_b.db "$ref" "B: ACDC ($task, tau $tau) on the cluster and directly"
  done
done
note "B: 4 ACDC runs (2 thresholds x 2 tasks) merged, each = its direct run"

# --- C: a task killed midway and requeued resumes its shard ------------------
"$MECH" init -o mid.safetensors --layers 4 --heads 4 --d-model 64 --d-head 16 --d-mlp 256 --vocab 500 \
  --n-ctx 64 --seed 2 >/dev/null || fail "mech init (C)"
c_args="--dataset induction --n 40 --len 20 --sweep resid_pre"
c=$(MODEL=mid.safetensors DATASET=induction N=40 SWEEP=resid_pre OUT=c EXTRA="--len 20" \
    sbatch --parsable --array=0-1 "$EX/patch_array.sbatch") || fail "sbatch C"
mc=$(sbatch --parsable --dependency=afterany:$c "$EX/merge.sbatch" c/patch 2 join) || fail "sbatch C's merge"
"$MECH" patch --model mid.safetensors $c_args --threads 1 --db ref_c.db >/dev/null 2>&1 &
ref_pid=$!
db=c/patch_0.db
n=0
for i in $(seq 1 1200); do
  # read-only: sqlite3 would otherwise create the file before mech does
  [ -f $db ] && n=$(sqlite3 -readonly $db "select count(distinct item) from results" 2>/dev/null)
  [ "${n:-0}" -ge 3 ] && break
  sleep 0.05
done
[ "${n:-0}" -ge 3 ] || fail "C: task 0 did not get going in 60 s"
# Kill it and put it back in the queue in one step, as Slurm does to a task
# preempted or on a failed node. (After scancel the task has ended for good;
# `scontrol requeue` then runs it again, but its merge would have run.)
scontrol requeue ${c}_0 || fail "C: scontrol requeue"
for i in $(seq 1 100); do
  s=$(state ${c}_0)
  [ "$s" = PENDING ] && break
  sleep 0.1
done
[ "$s" = PENDING ] || fail "C: task 0 is $s after scontrol requeue"
kept=$(sqlite3 -readonly $db "select count(distinct item) from results")
[ "$kept" -ge 3 ] && [ "$kept" -lt 20 ] || fail "C: killed with $kept of 20 pairs done: not midway"
note "C: task 0 killed and requeued after $kept of its 20 pairs"
# Slurm holds a requeued job back (about 2 min); start it now, but not in
# the second of the requeue: slurmd refuses a credential made in the same
# second as the revoked one ("Job credential revoked", timestamps in whole
# seconds), which failed this step about one run in ten.
sleep 2
scontrol update JobId=${c}_0 StartTime=now || fail "C: scontrol update StartTime"
wait ${ref_pid} || fail "C: the unsharded run"
wait_jobs "$c,$mc" 120
[ "$(state ${c}_0)" = COMPLETED ] || fail "C: requeued task 0 is $(state ${c}_0)"
[ "$(state $mc)" = COMPLETED ] || fail "C: the merge job is $(state $mc): $(cat slurm-$mc.out 2>&1)"
grep -q "interrupted: finished pairs are kept" slurm-${c}_0.out && grep -q "$((20 - kept)) pairs left" slurm-${c}_0.out ||
  fail "C: task 0's log does not show the stop and the resume: $(cat slurm-${c}_0.out)"
dups=$(sqlite3 -readonly $db "select count(*) from (select 1 from results group by item, site, layer, pos, head,
  token, rank, metric having count(*) > 1)")
[ "$dups" = 0 ] || fail "C: $dups result rows twice in the resumed shard"
[ "$(sqlite3 -readonly $db "select status || ' ' || json_extract(params, '\$.shard') from runs")" = "done 1/2" ] ||
  fail "C: the shard's run: $(sqlite3 -readonly $db 'select * from runs')"
same_rows c/patch.db 1 ref_c.db 1 "C: the joined shards (one killed and resumed) and the unsharded run"
note "C: resumed shard joined = the unsharded run ($(wc -l <a.rows) rows, none twice)"
echo "ok: Slurm test passed in $(( $(date +%s) - T0 )) s"
