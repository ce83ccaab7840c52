#!/usr/bin/env bash
# Prepares `npm run bench:gpu` for the GPU machine (which has no Node and no network), here:
#   bash bench/gpu/pack.sh            (npm run bench:gpu:pack)
# builds the library and bench/gpu/run.mjs, packs Node + this package + its runtime dependencies
# + the Vulkan loaders into .gpu/ (scripts/device-bundle.sh, or the script $DEVICE_BUNDLE names),
# and puts the benchmark next to them as .gpu/bench-gpu.mjs. Then, on the device, one command:
#   bash .gpu/run.sh .gpu/bench-gpu.mjs          carry: [".gpu"]
# Results come back under $OUT/bench/results/ (copy them into bench/results/), the log as $OUT/run.log;
# run.sh exits with the benchmark's status (bench/gpu/run.ts's header: 0 ok, 1 crashed, 3 self-check failed).
set -euo pipefail
cd "$(dirname "$0")/../.."
bundler=${DEVICE_BUNDLE:-scripts/device-bundle.sh}
[ -f "$bundler" ] || { echo "bench/gpu/pack.sh: no $bundler (DEVICE_BUNDLE names the device-bundle script; the default is scripts/device-bundle.sh)"; exit 2; }
npm run bench:gpu:build
bash "$bundler" .gpu
cp bench/gpu/run.mjs .gpu/bench-gpu.mjs
echo "ready: on the device run   bash .gpu/run.sh .gpu/bench-gpu.mjs   with carry [\".gpu\"]   ($(du -sh .gpu | cut -f1))"
