#!/usr/bin/env bash
# Makes @tensorflow/tfjs-node usable. On a networked machine its own install script
# downloads libtensorflow; on an air-gapped one (our CI) we take the TensorFlow C API
# from the tensorflow-cpu wheel in the local pip mirror and build the N-API binding
# from source. Idempotent: does nothing when the binding already loads.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=node_modules/@tensorflow/tfjs-node
[ -d "$PKG" ] || { echo "setup-tfjs-node: $PKG missing; run npm ci first" >&2; exit 1; }

loads() { node -e "require('@tensorflow/tfjs-node')" >/dev/null 2>&1; }
if loads; then echo "setup-tfjs-node: binding already loads"; exit 0; fi

# 1. The ordinary install (downloads prebuilt libtensorflow + binding) where a network exists.
if [ "${INF_LLAVA_OFFLINE:-}" != "1" ]; then
  if (cd "$PKG" && timeout 120 node scripts/install.js >/dev/null 2>&1) && loads; then
    echo "setup-tfjs-node: ordinary install worked"; exit 0
  fi
  echo "setup-tfjs-node: ordinary install unavailable; building offline from the tensorflow-cpu wheel"
fi

TF_WHEEL_VERSION=${TF_WHEEL_VERSION:-2.21.0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PIP_INDEX_URL=${PIP_INDEX_URL:-file:///opt/pypi/simple} \
  python3 -m pip download --no-deps --quiet -d "$WORK" "tensorflow-cpu==$TF_WHEEL_VERSION"
WHEEL=$(ls "$WORK"/tensorflow_cpu-*.whl | head -1)
(cd "$WORK" && python3 - "$WHEEL" <<'PY'
import sys, zipfile
want = ("tensorflow/libtensorflow_cc.so.2", "tensorflow/libtensorflow_framework.so.2")
hdr = ("tensorflow/include/tensorflow/c/", "tensorflow/include/tensorflow/core/platform/ctstring",
       "tensorflow/include/tsl/platform/ctstring", "tensorflow/include/xla/tsl/c/")
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n in want or n.startswith(hdr):
            z.extract(n, "x")
PY
)
DEPS=$PKG/deps
rm -rf "$DEPS" && mkdir -p "$DEPS/lib" "$DEPS/include"
cp "$WORK"/x/tensorflow/libtensorflow_cc.so.2 "$WORK"/x/tensorflow/libtensorflow_framework.so.2 "$DEPS/lib/"
cp -r "$WORK"/x/tensorflow/include/* "$DEPS/include/"
( cd "$DEPS/lib"
  ln -sf libtensorflow_cc.so.2 libtensorflow.so
  ln -sf libtensorflow_cc.so.2 libtensorflow.so.2
  ln -sf libtensorflow_cc.so.2 libtensorflow.so.2.9.1
  ln -sf libtensorflow_framework.so.2 libtensorflow_framework.so
  ln -sf libtensorflow_framework.so.2 libtensorflow_framework.so.2.9.1 )

NPM_ROOT=$(npm root -g)/npm
export npm_config_node_gyp="$NPM_ROOT/node_modules/node-gyp/bin/node-gyp.js"
( cd "$PKG" && ../../.bin/node-pre-gyp rebuild --build-from-source \
    --build-latest-napi-version-only --nodedir=/usr >"$WORK/build.log" 2>&1 ) \
  || { tail -40 "$WORK/build.log" >&2; echo "setup-tfjs-node: build failed" >&2; exit 1; }
loads || { echo "setup-tfjs-node: built, but the binding does not load" >&2; exit 1; }
node -e "const tf=require('@tensorflow/tfjs-node'); console.log('setup-tfjs-node: ok, TF', tf.version.tfjs, 'libtensorflow', tf.backend().binding.TF_Version)"
