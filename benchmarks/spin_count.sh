#!/bin/bash
# Whole `gfi explain` commands (the default preset, the bundled photo, two threads) under OpenMP
# spin counts between passive waiting (0) and libgomp's own (300000), quiet and beside a Python busy
# loop on one core: how long a thread spins before it sleeps, against what it costs when the cores
# are shared. Two repeats, the counts taking turns. Usage: bash benchmarks/spin_count.sh > OUT.txt
set -u
IMG="$(cd "$(dirname "$0")/.." && pwd)/src/gfi/assets/dog_cat.jpg"
OUT="$(mktemp -d)"
t() {
  local s e
  s=$(date +%s.%N)
  GOMP_SPINCOUNT=$1 python -m gfi explain "$IMG" --threads 2 --out "$OUT/run" --overwrite --quiet > /dev/null 2>&1 || echo -n "FAILED "
  e=$(date +%s.%N)
  python -c "print(round($e - $s, 2))"
}
echo "condition spin_count seconds"
for cond in quiet loaded; do
  BUSY=""
  if [ "$cond" = loaded ]; then python -c "while True: pass" & BUSY=$!; sleep 2; fi
  for rep in 1 2; do
    for n in 0 1000 10000 100000; do echo "$cond $n $(t "$n")"; done
  done
  if [ -n "$BUSY" ]; then kill "$BUSY"; fi
done
rm -rf "$OUT"
