#!/usr/bin/env bash
# Builds the one Lambda artifact every function runs, with cargo-lambda (zig as the cross
# linker, both from PyPI in .venv), into target/lambda/gpufleet-lambda/bootstrap, where
# template.yaml's shared CodeUri points. Prints its size, its zipped size (what `sam deploy`
# uploads, once for all functions) and the build time.
#
#   scripts/lambda_build.sh            release build for deployment (arm64)
#   scripts/lambda_build.sh --debug    the same artifact unoptimised
#
# arm64 needs the aarch64-unknown-linux-gnu standard library; when rustup cannot add it the
# build falls back to x86_64 and says so (deploy with Architecture=x86_64 then).
set -euo pipefail
cd "$(dirname "$0")/.."

# --disable-optimizations: cargo-lambda's defaults (fat LTO, one codegen unit) would cost
# minutes of linking on two cores for little gain here; the workspace's release profile
# (16 codegen units, stripped) is used as is.
profile=(--release --disable-optimizations)
profile_name=release
if [ "${1:-}" = "--debug" ]; then
  profile=()
  profile_name=debug
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
# cargo-lambda finds zig through the first python3 on PATH.
export PATH="$PWD/.venv/bin:$PATH"

arch=(--arm64)
arch_name=arm64
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  if ! rustup target add aarch64-unknown-linux-gnu >/dev/null 2>&1; then
    echo "NOTE: could not add the aarch64-unknown-linux-gnu target (offline?); building x86_64 instead."
    echo "      Deploy with --parameter-overrides Architecture=x86_64."
    arch=(--x86-64)
    arch_name=x86_64
  fi
fi

start=$(date +%s)
cargo lambda build "${profile[@]}" "${arch[@]}" -p gpufleet-functions --bin gpufleet-lambda --locked
end=$(date +%s)

artifact=target/lambda/gpufleet-lambda/bootstrap
code_uri=$(grep -m1 -o 'CodeUri: target/lambda/[a-z0-9-]*/' template.yaml | sed 's/CodeUri: //')
if [ "$code_uri" != "target/lambda/gpufleet-lambda/" ] || [ ! -f "$artifact" ]; then
  echo "MISSING: $artifact (template.yaml's CodeUri is ${code_uri:-none})"
  exit 1
fi
functions=$(grep -c '^          GPUFLEET_FUNCTION: ' template.yaml)
.venv/bin/python - "$artifact" "$arch_name" "$profile_name" "$functions" "$((end - start))" <<'PY'
import io, os, sys, zipfile
artifact, arch, profile, functions, seconds = sys.argv[1:]
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
    z.write(artifact, "bootstrap")
mib = lambda n: n / 1048576
print(f"{arch} {profile} artifact: {artifact}, {mib(os.path.getsize(artifact)):.1f} MiB "
      f"({mib(len(buf.getvalue())):.1f} MiB zipped), run by {functions} functions; built in {seconds} s")
PY
if [ "$arch_name" = x86_64 ]; then
  echo "NOTE: built for x86_64; deploy with --parameter-overrides Architecture=x86_64."
fi
