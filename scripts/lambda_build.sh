#!/usr/bin/env bash
# Builds every Lambda function with cargo-lambda (zig as the cross linker, both from PyPI in
# .venv) into target/lambda/<function>/bootstrap, where template.yaml's CodeUri points, then
# checks every function of the template has its bootstrap and prints their sizes.
#
#   scripts/lambda_build.sh            release build for deployment (arm64)
#   scripts/lambda_build.sh --debug    the same binaries unoptimised (what CI checks)
#
# arm64 needs the aarch64-unknown-linux-gnu standard library; when rustup cannot add it the
# build falls back to x86_64 and says so (deploy with Architecture=x86_64 then).
set -euo pipefail
cd "$(dirname "$0")/.."

# --disable-optimizations: cargo-lambda's defaults (thin LTO, one codegen unit per binary)
# cost about two minutes of linking per function here, an hour for all of them on two
# cores; the workspace's release profile (no LTO, stripped) builds each in seconds.
profile=(--release --disable-optimizations)
[ "${1:-}" = "--debug" ] && profile=()

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
cargo lambda build "${profile[@]}" "${arch[@]}" -p gpufleet-functions --locked
end=$(date +%s)

missing=0
total=0
printf '%-24s %10s\n' function bytes
for dir in $(grep -o 'CodeUri: target/lambda/[a-z0-9-]*/' template.yaml | sed 's/CodeUri: //'); do
  if [ ! -f "$dir/bootstrap" ]; then
    echo "MISSING: $dir/bootstrap"
    missing=1
    continue
  fi
  size=$(stat -c %s "$dir/bootstrap")
  total=$((total + size))
  printf '%-24s %10d\n' "$(basename "$dir")" "$size"
done
echo "$arch_name ${profile[*]:-(debug)}: $(grep -c 'CodeUri: target/lambda/' template.yaml) functions, $((total / 1024 / 1024)) MiB in all, built in $((end - start)) s"
if [ "$arch_name" = x86_64 ]; then
  echo "NOTE: built for x86_64; deploy with --parameter-overrides Architecture=x86_64."
fi
exit $missing
