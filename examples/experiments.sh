#!/bin/sh
# examples/experiments.sh: the README's worked example and the second half
# of `make demo`. Patches a compiled RASP model and a small random GPT-2,
# reads them through the lenses, scores heads, keeps every result in one
# SQLite file and asks it questions with sqlite3.
#
#   sh examples/experiments.sh [OUTDIR]        (default demo-out/)
#   MECH=build-san/mech sh examples/experiments.sh /tmp/x
# Works from any directory: the programs are found beside this script, mech
# in $MECH, else the repository's ./mech, else on PATH; OUTDIR is relative
# to the current directory.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -z "$MECH" ]; then
  if [ -x "$HERE/../mech" ]; then MECH="$HERE/../mech"
  elif command -v mech >/dev/null 2>&1; then MECH=mech
  else echo "experiments.sh: no mech binary: run make, or set MECH=/path/to/mech" >&2; exit 1; fi
fi
OUT=${1:-demo-out}
mkdir -p "$OUT"
DB="$OUT/results.db"
rm -f "$DB" "$DB-wal" "$DB-shm"
q() { # a query, with sqlite3 when it is installed
  if command -v sqlite3 >/dev/null 2>&1; then sqlite3 -header -column "$DB" "$1"
  else echo "(sqlite3 not installed; the query was: $1)"; fi
}

echo "== compile reverse.rasp into weights (verified against the interpreter) =="
"$MECH" compile "$HERE/rasp/reverse.rasp" -o "$OUT/reverse.safetensors"

echo; echo "== activation patching on the compiled model: 20 random inputs, corrupted by shuffling =="
# run 1: which layer and position of the residual stream carry the answer?
"$MECH" patch --model "$OUT/reverse.safetensors" --dataset compiled --n 20 --len 4 --corruption shuffle \
            --sweep resid_pre --metric logit_diff --db "$DB"
# run 2: the same pairs, head by head, as a spec file (every command takes one)
cat > "$OUT/heads.json" <<JSON
{"model": "$OUT/reverse.safetensors", "dataset": "compiled", "n": 20, "len": 4,
 "corruption": "shuffle", "sweep": "heads", "metric": "kl", "db": "$DB"}
JSON
"$MECH" patch --spec "$OUT/heads.json"

echo; echo "== decoder lens: which layer computes which RASP variable =="
"$MECH" lens --model "$OUT/reverse.safetensors" --input "a b c d" --db "$DB"

echo; echo "== ACDC on the compiled model, zero ablation: the circuit found beside the compiler's =="
"$MECH" acdc --model "$OUT/reverse.safetensors" --dataset compiled --n 20 --tau 1e-3 --ablation zero --db "$DB"

echo; echo "== a small random-weight GPT-2: IOI patching, logit lens, head scores, attribution =="
"$MECH" init -o "$OUT/gpt2-tiny.safetensors" --preset tiny --seed 1 >/dev/null
"$MECH" patch --model "$OUT/gpt2-tiny.safetensors" --dataset ioi --n 8 --sweep heads --db "$DB"
"$MECH" lens --model "$OUT/gpt2-tiny.safetensors" --prompt "When Mary and John went to the store, John gave a drink to" \
           --target " Mary" --db "$DB" >/dev/null
"$MECH" heads --model "$OUT/gpt2-tiny.safetensors" --random 10 --batch 4 --db "$DB"
"$MECH" attrib --model "$OUT/gpt2-tiny.safetensors" --prompt "When Mary and John went to the store, John gave a drink to" \
             --answer " Mary" --wrong " John" --db "$DB" >/dev/null

echo; echo "== the results file, queried with sqlite3 =="
q "select id, kind, status, json_extract(params, '$.sweep') as sweep from runs"
echo; echo "-- reverse: mean normalised effect of restoring resid_pre (1 = the clean answer back), by layer and position"
q "select layer, pos, round(avg(value), 3) as effect from results
   where run_id = 1 and metric = 'effect' group by layer, pos having abs(effect) > 0.05 order by layer, pos"
echo; echo "-- reverse: KL recovered by each head (the compiler placed the aggregate in layer 2)"
q "select layer, head, round(avg(value), 3) as effect from results
   where run_id = 2 and metric = 'effect' group by layer, head order by effect desc"
echo; echo "-- decoder lens: the first layer whose residual stream holds each variable (rank = 1: present)"
q "select metric as variable, min(layer) as first_layer from results
   where run_id = 3 and site = 'decoder_lens' and rank = 1 group by metric order by first_layer"
echo; echo "-- ACDC: the edges it kept, strongest first (effect = metric change when the edge was tried)"
q "select site as edge, round(value, 3) as effect from results
   where run_id = 4 and metric = 'kept' order by value desc, site limit 5"
echo; echo "-- IOI on the random GPT-2: the heads with the largest mean effect (random weights: noise)"
q "select layer, head, round(avg(value), 3) as effect from results
   where run_id = 5 and metric = 'effect' group by layer, head order by effect desc limit 3"
echo; echo "== an ACDC threshold sweep on the compiled model, both ablations (each threshold's circuit is a run) =="
"$MECH" acdc --model "$OUT/reverse.safetensors" --dataset compiled --n 20 --sweep --taus 1e-4,1e-2,1 \
            --ablations zero,resample --db "$DB"

echo
"$MECH" db --db "$DB" ls
