#!/usr/bin/env bash
# The one command on real data as a user runs it, some of it beside a CPU-bound process.
#
#   1. series of 96 samples (ucr:ECG200, ucr:ElectricDevices), the paper's budget, 3 minutes,
#      one process and two (the inputs on which TFLM used to crash the search);
#   2. `tinytnas search --timeout 40s` on gunpoint and 3 minutes on small ucr: sets, each with a
#      `while True: pass` process beside it, then `tinytnas retrain --timeout 2m` on the same
#      study (idle machine) for reference.
#
# Run from the repository root: bash benchmarks/busy_machine.sh [OUT_DIR]
# Writes OUT_DIR/summary.txt (exit code and wall seconds per command) and each command's output;
# the int8 test accuracies are in the outputs' "On test" lines and in */report.json.
set -u
T="${TINYTNAS:-.venv/bin/tinytnas}"
O="${1:-/tmp/tinytnas-busy}"
mkdir -p "$O"
BUDGET=(--ram 20KB --flash 64KB --macs 60K)
run() {  # name, command...
    local name=$1; shift
    local start end
    start=$(date +%s.%N)
    "$@" >"$O/$name.out" 2>&1
    local rc=$?
    end=$(date +%s.%N)
    echo "$name rc=$rc wall=$(python3 -c "print(round($end - $start, 1))")" >>"$O/summary.txt"
}
ucr_files() {  # ucr:Name -> Name_train.npz / Name_test.npz in $O
    .venv/bin/python - "$1" "$O" <<'PY'
import sys
import numpy as np
from tinytnas_optuna.datasets import load_dataset
name, out = sys.argv[1], sys.argv[2]
ds = load_dataset(f"ucr:{name}")
np.savez(f"{out}/{name}_train.npz", features=ds.x_train, labels=ds.y_train)
np.savez(f"{out}/{name}_test.npz", features=ds.x_test, labels=ds.y_test)
PY
}
for d in ECG200 ElectricDevices; do
    ucr_files "$d"
    for jobs in 1 2; do
        run "crash-$d-jobs$jobs" "$T" search --train "$O/${d}_train.npz" --test "$O/${d}_test.npz" \
            "${BUDGET[@]}" --timeout 3m --jobs "$jobs" --progress plain \
            --storage "sqlite:///$O/crash-$d-$jobs.db" --study s --out "$O/crash-$d-$jobs-model"
    done
done
busy() {  # name dataset timeout seed
    python3 -c "while True: pass" &
    local hog=$!
    run "busy-$1" "$T" search --dataset "$2" "${BUDGET[@]}" --timeout "$3" --seed "$4" \
        --progress plain --storage "sqlite:///$O/$1.db" --study s --out "$O/$1-model"
    kill "$hog"
    run "retrain-$1" "$T" retrain --storage "sqlite:///$O/$1.db" --study s --out "$O/$1-retrain" \
        --timeout 2m
}
for seed in 0 1 2; do busy "gunpoint-s$seed" gunpoint 40s "$seed"; done
for d in ECG200 CBF ArrowHead; do busy "$d" "ucr:$d" 3m 0; done
grep -H "On test" "$O"/*.out >>"$O/summary.txt"
