#!/usr/bin/env bash
# Run THERE, on the lent GPU machine, from the repo root, with .whl carried (bench/device/prepare.sh
# filled it here) and $OUT set by the device tool. See bench/device/README.md for the exact call.
#
# Installs .whl/ into /tmp/site, then, each bounded by `timeout` within GPU_CHECKS_BUDGET_S
# (default 450 s for the whole script):
#   env    bench/device/checks.py env: carried versions, the image's versions, imports, CUDA
#   place  a 4-trial sweep at 0.25 GPU per trial; its trials table must say cuda  -> $OUT/place.txt
#   quick  python -m bench.gpu_packing --quick                                     -> $OUT/quick/
#   full   python -m bench.gpu_packing $PACKING_ARGS (default: the full benchmark)  -> $OUT/
# Everything printed also lands in $OUT/gpu_checks.log. Exit status: 0 when every step passed.
# Environment: PY (default python3), GPU_CHECKS_BUDGET_S, PACKING_ARGS (extra arguments of the full
# run, e.g. "--trials 15"), GPU_CHECKS_STEPS (default "env place quick full").
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
: "${OUT:?OUT is not set: the device tool sets it (run this through the device tool)}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_checks.log") 2>&1
PY=${PY:-python3}
BUDGET=${GPU_CHECKS_BUDGET_S:-450}
PACKING_ARGS=${PACKING_ARGS:-}
STEPS=${GPU_CHECKS_STEPS:-env place quick full}
export PYTHONUNBUFFERED=1
begin=$SECONDS
summary=()

left() { echo $((BUDGET - (SECONDS - begin))); }

stop_ray() {  # after a step was killed: its Ray processes may outlive it
  "$PY" -c "import sys; from ray.scripts.scripts import main; sys.argv = ['ray', 'stop', '--force']; main()" \
    >/dev/null 2>&1 || true
}

# step NAME CAP_SECONDS COMMAND...: run COMMAND for at most min(CAP, what is left of the budget).
step() {
  local name=$1 cap=$2 limit rc t0
  shift 2
  case " $STEPS " in *" $name "*) ;; *) summary+=("$name: not asked for"); return 0 ;; esac
  limit=$(left)
  if ((limit < 15)); then
    echo "== $name: skipped, ${limit}s of the ${BUDGET}s budget left"
    summary+=("$name: SKIPPED (budget spent)")
    return 1
  fi
  ((limit > cap)) && limit=$cap
  echo "== $name (at most ${limit}s; $(left)s of the budget left): $*"
  t0=$SECONDS
  timeout -k 10 "$limit" "$@"
  rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "== $name: TIMED OUT after $((SECONDS - t0))s"
    summary+=("$name: TIMEOUT after $((SECONDS - t0))s")
    stop_ray
  else
    echo "== $name: exit $rc after $((SECONDS - t0))s"
    summary+=("$name: $([ $rc -eq 0 ] && echo PASS || echo "FAIL (exit $rc)") in $((SECONDS - t0))s")
  fi
  return $rc
}

finish() {
  echo "== summary ($((SECONDS - begin))s of ${BUDGET}s)"
  printf '  %s\n' "${summary[@]}"
  local s
  for s in "${summary[@]}"; do
    case $s in *": PASS"* | *": not asked for"*) ;; *) exit 1 ;; esac
  done
  exit 0
}

echo "== machine"
nvidia-smi || echo "nvidia-smi failed"
"$PY" -c 'import sys, torch; print(sys.executable, sys.version.split()[0], "torch", torch.__version__)'

echo "== install .whl into /tmp/site"
t0=$SECONDS
[ -f .whl/ray-nojars.tar.xz ] && [ -f .whl/closure.json ] || {
  echo "no .whl/ray-nojars.tar.xz or .whl/closure.json: run bench/device/prepare.sh here and carry .whl"
  summary+=("install: FAIL (.whl missing)")
  finish
}
rm -rf /tmp/site && mkdir -p /tmp/site
if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl &&
  tar -xJf .whl/ray-nojars.tar.xz -C /tmp/site; then
  summary+=("install: PASS in $((SECONDS - t0))s")
else
  summary+=("install: FAIL")
  finish
fi
# The repo too: Ray's worker processes import paitune (not installed here) by this path.
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
echo "installed in $((SECONDS - t0))s; PYTHONPATH=$PYTHONPATH"

step env 90 "$PY" bench/device/checks.py env --site /tmp/site || {
  echo "env check failed: the sweeps cannot work, stopping here"
  finish
}

# The sweep's own files stay in /tmp (hundreds of them; $OUT brings back 8): its table goes to $OUT.
rm -rf /tmp/place
place() {
  set -o pipefail
  "$PY" -m paitune sweep default --set epochs=2 --num-samples 4 --gpus-per-trial 0.25 --max-concurrent 4 \
    --sampler random --scheduler fifo --out /tmp/place --name p --quiet &&
    "$PY" bench/device/checks.py place /tmp/place/p --gpus-per-trial 0.25 | tee "$OUT/place.txt"
}
export -f place
export PY OUT
step place 150 bash -c place

step quick 120 "$PY" -m bench.gpu_packing --quick --out "$OUT/quick"

# shellcheck disable=SC2086  # PACKING_ARGS is a list of arguments
step full 100000 "$PY" -m bench.gpu_packing --out "$OUT" $PACKING_ARGS

finish
