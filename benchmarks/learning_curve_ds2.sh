#!/bin/bash
# Issue 20's ds2 learning curve: the `latent` family in stages of CPU time against the `parametric` baseline,
# each point scored by the CaloChallenge low-level classifier (one setting for all) and the response chi2/NDF
# on an independent evaluation file. Results and the figures it produced: docs/results.md, "Dataset 2" (session 32:
# the zero-inflated voxel model, now the preset; LATENT_CONFIG chooses another model section).
#
#   WORK=/tmp/lc20 benchmarks/learning_curve_ds2.sh                 # everything (hours of one core)
#   WORK=/tmp/lc20 LATENT_STAGES="350 700" benchmarks/learning_curve_ds2.sh
#
# Each step is skipped when its output exists, so a stopped run continues where it was. Times: every command
# runs under /usr/bin/time (user+sys CPU seconds, wall seconds, peak RSS) into $WORK/t_*.txt, the load average
# at its start into $WORK/load_*.txt, one line per step into the logs. CPU minutes, not wall minutes, make the
# curve's x axis, so it does not depend on the machine's load. CF selects the caloforge to run (default: the
# one on PATH; or a frozen copy of src/ on PYTHONPATH with CF="python cf.py", where cf.py calls caloforge.cli.app
# under `if __name__ == "__main__"`: simulate --jobs spawns workers that import the main script again).
set -u
WORK=${WORK:-/tmp/lc20}
CF=${CF:-caloforge}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
TIMEFMT="cpu_s %U %S wall_s %e maxrss_kb %M"
N_TRAIN=${N_TRAIN:-100000}; N_VAL=${N_VAL:-3000}; N_EVAL=${N_EVAL:-10000}
LATENT_STAGES=${LATENT_STAGES:-700 2800 5600 8750}  # cumulative iterations: 0.4 CPU s each (1 thread, session
# 31, validations every 175 included), so 8750 is issue 20's 60 CPU minutes (62.3 measured)
PARAMETRIC_ITERATIONS=${PARAMETRIC_ITERATIONS:-50}   # batches of 2048: one pass over 100k showers
# latent's checkpoint selection: the response chi2 alone kept iteration 175 of 700 (session 30, docs/results.md)
# while the shapes were what was missing; combined = sqrt(chi2/NDF x fd_norm) sees both. The parametric keeps chi2.
LATENT_SELECT=${LATENT_SELECT:-combined}
LATENT_CONFIG=${LATENT_CONFIG:-}  # a YAML file with a 'model' section over the CPU preset (e.g. voxel_model), or none
CLS="--classifier-showers ${CLS_N:-10000} --classifier-epochs ${CLS_EP:-10} --classifier-patience ${CLS_EP:-10}"
CLS="$CLS --classifier-minutes ${CLS_MIN:-20} --classifier-precision ${CLS_PRECISION:-bf16}"
# the high-level classifier (362 inputs) learns in 20 epochs; the low-level one (6481 inputs, 12 steps per epoch on
# 10k + 10k showers) needs ~50 epochs to converge on ds2: CLS_EP=50 where the CPU time allows (~15 CPU min each)
CLS_HIGH="--classifier-showers ${CLS_N:-10000} --classifier-epochs 20 --classifier-patience 20 --classifier-minutes 25"
CLS_HIGH="$CLS_HIGH --classifier-precision ${CLS_PRECISION:-bf16}"
mkdir -p "$WORK"; cd "$WORK" || exit 1

timed() { # name command...: run under /usr/bin/time, the load average at the start recorded
  local name=$1; shift
  uptime > "load_$name.txt"
  nice -n 5 /usr/bin/time -f "$TIMEFMT" -o "t_$name.txt" "$@" > "$name.log" 2>&1
  local rc=$?
  echo "$(date +%T) $name rc=$rc $(cat "t_$name.txt") | load at start: $(cat "load_$name.txt")"
  return $rc
}

simulate() { # file n seed jobs: particle-level ds2 electrons, log-uniform 1 GeV - 1 TeV (the ds2 default)
  [ -f "$1.h5" ] || timed "sim_$1" $CF simulate -g ds2 -p electron -n "$2" --physics cascade --jobs "$4" \
    --seed "$3" -o "$1.h5" --threads 1
}

curve() { # family ckpt stages...: staged training (--resume), a bundle copy and generated showers per stage
  local fam=$1 ckpt=$2; shift 2
  for n in "$@"; do
    if [ ! -s "t_train_${fam}_$n.txt" ]; then
      local resume="" select=""; [ -f "run_$fam/run.json" ] && resume=--resume
      [ "$fam" = latent ] && [ -z "$resume" ] && select="--select-by $LATENT_SELECT"  # a resume keeps it
      [ "$fam" = latent ] && [ -n "$LATENT_CONFIG" ] && select="$select --config $LATENT_CONFIG"
      timed "train_${fam}_$n" $CF train --data train.h5 --validation validation.h5 --family "$fam" \
        --max-iterations "$n" --checkpoint-every "$ckpt" --out "run_$fam" $resume --threads 1 --device cpu \
        --seed 0 --no-progress $select
    fi
    rm -rf "bundle_${fam}_$n"; cp -r "run_$fam/bundle" "bundle_${fam}_$n"
    while [ ! -s t_sim_eval.txt ]; do sleep 10; done
    [ -s "t_gen_${fam}_$n.txt" ] || timed "gen_${fam}_$n" $CF generate --model "bundle_${fam}_$n" --like eval.h5 \
      -o "gen_${fam}_$n.h5" --threads 1 --device cpu --seed 1 --force
  done
}

evaluate() { # point...: high-level (20 epochs) and low-level (10 epochs) classifiers, response chi2, separation powers
  for g in "$@"; do
    while [ ! -s "t_gen_$g.txt" ]; do sleep 20; done
    [ -s "t_evh_$g.txt" ] || timed "evh_$g" $CF evaluate -r eval.h5 -i "gen_$g.h5" -g ds2 --mode full --classifier high \
      --no-prdc --skip figures,fpd,kpd,split $CLS_HIGH --threads 1 --device cpu --seed 0 --run "bundle_$g" -o "evh_$g" --force
    [ -s "t_ev_$g.txt" ] || timed "ev_$g" $CF evaluate -r eval.h5 -i "gen_$g.h5" -g ds2 --mode full --classifier low \
      --no-prdc --skip figures,fpd,kpd,split $CLS --threads 1 --device cpu --seed 0 --run "bundle_$g" -o "ev_$g" --force
  done
}

simulate validation "$N_VAL" 21 2
simulate train "$N_TRAIN" 20 2          # issue 19's speed figure: 100k showers on two worker processes
# shellcheck disable=SC2086
curve latent 175 $LATENT_STAGES > curve_latent.log 2>&1 &
curve parametric 25 "$PARAMETRIC_ITERATIONS" > curve_parametric.log 2>&1 &
simulate eval "$N_EVAL" 22 1
points="parametric_$PARAMETRIC_ITERATIONS"; for n in $LATENT_STAGES; do points="$points latent_$n"; done
# shellcheck disable=SC2086
evaluate $points > evalq.log 2>&1
wait
