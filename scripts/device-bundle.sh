#!/usr/bin/env bash
# Packs what a Node program of this project needs to run on a GPU machine that has no Node and no
# network (the in-repo copy of the workplace's device-bundle script; bench/gpu/pack.sh uses it):
#   bash scripts/device-bundle.sh .gpu        (in the project root, after `npm run build`)
# writes .gpu/{node.xz, nm.tar.xz, gl/*.deb, run.sh} (~30 MB; .gitignore ignores .gpu/). Then, on the device:
#   bash .gpu/run.sh SCRIPT.mjs [args]         (carry: [".gpu"]; SCRIPT relative to the repository root)
# run.sh unpacks the Vulkan/GL loaders (not with NO_GL=1), points Vulkan at the NVIDIA driver, unpacks Node and
# a node_modules holding this package (as `inf-llava`: package.json, dist/, assets/) and its runtime
# dependencies into $BUNDLE_TMP (default /tmp), then runs the script from there, so `import ... from 'inf-llava'`
# and `from 'inf-llava/node'` resolve. Output also goes to $OUT/run.log ($BUNDLE_TMP/run.log without $OUT).
# run.sh exits with the script's exit status (a failed unpacking: 70).
# Needs here: node, xz, tar, apt-get (with its package lists: `apt-get update` once).
# EXTRA_PACKAGES="a b" adds more node_modules entries (whole folders).
set -euo pipefail
out=${1:?usage: scripts/device-bundle.sh OUTDIR}
[ -f package.json ] && [ -d dist ] || { echo "scripts/device-bundle.sh: run in the project root after npm run build"; exit 2; }
name=$(node -p "require('./package.json').name")
rm -rf "$out"; mkdir -p "$out/gl"
git check-ignore -q "$out/" 2>/dev/null || echo "scripts/device-bundle.sh: note: $out/ is not git-ignored"
xz -T2 -6 -c "$(readlink -f "$(command -v node)")" > "$out/node.xz"
stage=$(mktemp -d); trap 'rm -rf "$stage"' EXIT
nm="$stage/node_modules"; mkdir -p "$nm/$name"
cp package.json "$nm/$name/"; cp -r dist "$nm/$name/"; [ -d assets ] && cp -r assets "$nm/$name/"
# Only the Node builds of tfjs and Dawn's native module: the rest of those packages is not needed.
pkg() { local p=$1; shift; [ -d "node_modules/$p" ] || return 0; mkdir -p "$nm/$p"; cp "node_modules/$p/package.json" "$nm/$p/";
        for f in "$@"; do mkdir -p "$nm/$p/$(dirname "$f")"; cp -r "node_modules/$p/$f" "$nm/$p/$f"; done; }
pkg @tensorflow/tfjs-core dist/tf-core.node.js
pkg @tensorflow/tfjs-backend-cpu dist/tf-backend-cpu.node.js
pkg @tensorflow/tfjs-backend-webgpu dist/tf-backend-webgpu.node.js
pkg webgpu index.js dist/linux-x64/dawn.node
# tfjs-core's own dependencies, then this package's runtime dependencies, whole.
for p in long seedrandom $(node -p "Object.keys(require('./package.json').dependencies ?? {}).join(' ')") ${EXTRA_PACKAGES:-}; do
  if [ -d "node_modules/$p" ]; then mkdir -p "$nm/$(dirname "$p")"; cp -r "node_modules/$p" "$nm/$p"; fi
done
tar -cJf "$out/nm.tar.xz" -C "$stage" node_modules
( cd "$out/gl" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1 ) || { echo "scripts/device-bundle.sh: apt-get download failed (run apt-get update once)"; exit 2; }
cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# On the GPU machine: bash .gpu/run.sh SCRIPT.mjs [args]  (paths relative to the repository root).
# Exits with the script's exit status; 70 when the bundle could not be unpacked.
here=$(cd "$(dirname "$0")" && pwd); root=$(pwd)
tmp=${BUNDLE_TMP:-/tmp}
script=${1:?usage: run.sh SCRIPT.mjs [args]}; shift
fail() { echo "run.sh: $*" >&2; exit 70; }
if [ -z "${NO_GL:-}" ]; then
  for f in "$here"/gl/*.deb; do dpkg -x "$f" / || fail "dpkg -x $f failed"; done
  ldconfig || fail "ldconfig failed"
fi
icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json 2>/dev/null | head -1)
[ -n "$icd" ] && export VK_ICD_FILENAMES=$icd
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
mkdir -p "$tmp/nm" || fail "cannot make $tmp/nm"
xz -dc "$here/node.xz" > "$tmp/node" && chmod +x "$tmp/node" || fail "cannot unpack node into $tmp"
tar -xJf "$here/nm.tar.xz" -C "$tmp/nm" || fail "cannot unpack node_modules into $tmp/nm"
cp "$root/$script" "$tmp/nm/" || fail "no $root/$script"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
cd "$tmp/nm" && "$tmp/node" "$(basename "$script")" "$@" 2>&1 | tee "${OUT:-$tmp}/run.log"
exit "${PIPESTATUS[0]}"
RUN
chmod +x "$out/run.sh"
du -sh "$out"
