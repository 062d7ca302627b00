#!/bin/sh
# examples/experiments.sh: the README's worked example and the second half
# of `make demo`, on two models whose circuits are known: reverse.rasp
# compiled into weights, and a 2-layer attention-only model trained on
# induction (about 30 s on 2 cores). Patches them, reads them through the
# lenses, scores their heads, finds their circuits with ACDC and EAP, keeps
# every result in one SQLite file and asks it questions with sqlite3.
#
#   sh examples/experiments.sh [OUTDIR]        (default demo-out/)
#   MECH=build-san/mech sh examples/experiments.sh /tmp/x
#   INDUCTION_MODEL=examples/models/induction.safetensors sh examples/experiments.sh
# Works from any directory: the programs are found beside this script, mech
# in $MECH, else the repository's ./mech, else on PATH; OUTDIR is relative
# to the current directory. INDUCTION_MODEL=FILE uses that trained model
# (e.g. the shipped one, which the training command reproduces bit for bit)
# instead of training it: no train run then, the other runs are the same.
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
# runs mech, prints what it prints, and sets ID to the run it wrote (run ids
# depend on what ran before: with INDUCTION_MODEL there is no train run)
m() {
  out=$("$MECH" "$@")
  printf '%s\n' "$out"
  ID=$(printf '%s\n' "$out" | sed -n 's/^run \([0-9][0-9]*\):.*/\1/p' | head -n 1)
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

echo; echo "== an ACDC threshold sweep on the compiled model, both ablations (each threshold's circuit is a run) =="
"$MECH" acdc --model "$OUT/reverse.safetensors" --dataset compiled --n 20 --sweep --taus 1e-4,1e-2,1 \
            --ablations zero,resample --db "$DB"

echo; echo "== the compiled model's results, queried with sqlite3 =="
echo "-- reverse: mean normalised effect of restoring resid_pre (1 = the clean answer back), by layer and position"
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

# The induction model: token ids 0..255, no text tokenizer, so prompts are
# ids. The dataset `induction` (--len 10) is r r[0..9) for 10 random ids r
# from [100, 256): 19 tokens, the last one r[8] at position 18, its earlier
# copy at position 8; the answer is r[9] (position 9), the wrong answer the
# same token of an unrelated r' r'[0..9), which is the corrupted prompt.
IND="$OUT/induction.safetensors"
if [ -n "$INDUCTION_MODEL" ]; then
  echo; echo "== the trained induction model: $INDUCTION_MODEL (INDUCTION_MODEL set: not trained here) =="
  cp "$INDUCTION_MODEL" "$IND"
else
  echo; echo "== train a 2-layer attention-only model on induction (repeated random tokens; docs/train.md) =="
  "$MECH" train --task induction --attn-only --steps 2000 --batch 16 --seq 64 --lr 0.003 --warmup 200 --seed 1 \
              --threads 2 --log-every 500 --out "$IND" --db "$DB"
  if cmp -s "$IND" "$HERE/models/induction.safetensors"; then
    echo "the same bytes as the shipped examples/models/induction.safetensors"
  else
    echo "note: not the same bytes as the shipped examples/models/induction.safetensors"
  fi
fi

echo; echo "== head scores on repeated random tokens: a previous-token head and induction heads =="
m heads --model "$IND" --random 20 --db "$DB"; HEADS=$ID

echo; echo "== activation patching on the induction dataset: 20 pairs, by head and by residual position =="
m patch --model "$IND" --dataset induction --n 20 --len 10 --sweep heads --db "$DB"; PH=$ID
m patch --model "$IND" --dataset induction --n 20 --len 10 --sweep resid_pre --db "$DB"; PR=$ID

echo; echo "== logit lens and direct logit attribution on one induction prompt, given as ids =="
# ten ids, then the first six again: the next token is the seventh, 162
P=120,201,143,177,105,230,162,188,111,149,120,201,143,177,105,230
m lens --model "$IND" --ids $P --target 162 --db "$DB" >/dev/null; LENS=$ID
echo "run $LENS: logit lens of $P (queried below)"
m attrib --model "$IND" --ids $P --answer 162 --wrong 250 --top 6 --db "$DB"; ATTR=$ID

echo; echo "== ACDC on the induction dataset (KL on the repeated half): the K-composition =="
m acdc --model "$IND" --dataset induction --positions induction --tau 0.05 --db "$DB"; ACDC=$ID

echo; echo "== EAP on the induction dataset: every edge scored at once, from gradients =="
m eap --model "$IND" --dataset induction --top-n 30 --db "$DB" >/dev/null; EAP=$ID
echo "run $EAP: EAP scores of every edge, the top 30 kept (queried below)"

echo; echo "== the induction model's results, queried with sqlite3 =="
echo "-- head scores: every head above 0.3 as a previous-token or an induction head (of 8 heads)"
q "select metric as score, 'L' || layer || 'H' || head as head, round(value, 3) as value from results
   where run_id = $HEADS and metric in ('previous_token', 'induction') and value > 0.3
   order by metric desc, value desc"
echo; echo "-- patching heads: mean normalised effect (1 = the clean answer back), largest first"
q "select layer, head, round(avg(value), 3) as effect from results
   where run_id = $PH and metric = 'effect' group by layer, head order by abs(effect) desc limit 6"
echo; echo "-- patching resid_pre: where the answer comes from (pos 9 holds it, 8 the earlier copy, 18 the last token)"
q "select layer, pos, round(avg(value), 3) as effect from results
   where run_id = $PR and metric = 'effect' group by layer, pos having abs(effect) > 0.05 order by layer, pos"
echo; echo "-- logit lens: the rank and probability of the next token (162) at the last position, by layer"
q "select layer, rank as target_rank, printf('%.2g', value) as target_prob from results
   where run_id = $LENS and metric = 'target_prob' and pos = 15 order by layer"
echo; echo "-- ACDC: the edges it kept into the key inputs of layer-1 heads"
q "select site as edge, round(value, 3) as effect from results
   where run_id = $ACDC and metric = 'kept' and site like '%->blocks.1.hook_k_input%' order by value desc"
echo; echo "-- EAP: the best-ranked edges into layer-1 key inputs (rank of |score| among all edges)"
q "select rank, edge, round(score, 3) as score from (select site as edge, value as score,
   rank() over (order by abs(value) desc) as rank from results where run_id = $EAP and metric = 'score')
   where edge like '%->blocks.1.hook_k_input%' order by rank limit 4"

# A random-weight GPT-2 with the GPT-2 tokenizer, only so that the terminal
# interface's live views have a model that reads text (no results from it)
"$MECH" init -o "$OUT/gpt2-tiny.safetensors" --preset tiny --seed 1 >/dev/null

echo
"$MECH" db --db "$DB" ls
