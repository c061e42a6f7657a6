#!/usr/bin/env bash
# Time to the first page for a newcomer: clones this repository into a temporary directory
# (so the target directory is empty), runs the README's first command exactly as written,
# `cargo run --release --bin gpufleet -- serve`, and waits for http://127.0.0.1:8000/ to
# answer 200. Prints the time, and the AWS SDK crates the build compiled (there should be
# none). Prints numbers, asserts nothing.
#
#   scripts/first_run.sh                    with this machine's cargo registry (crates downloaded)
#   scripts/first_run.sh --empty-registry   with an empty CARGO_HOME: crates are downloaded too
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill -- "-$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if curl -s -o /dev/null http://127.0.0.1:8000/ 2>/dev/null; then
  echo "something already answers on 127.0.0.1:8000; stop it first"
  exit 1
fi
git clone -q "$repo" "$work/gpufleet"
registry="this machine's cargo registry"
if [ "${1:-}" = "--empty-registry" ]; then
  export CARGO_HOME="$work/cargo-home"
  registry="an empty CARGO_HOME (every crate downloaded)"
fi
cd "$work/gpufleet"
start=$(date +%s)
setsid cargo run --release --bin gpufleet -- serve > "$work/serve.log" 2>&1 &
server=$!
until [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/ 2>/dev/null)" = 200 ]; do
  if ! kill -0 "$server" 2>/dev/null; then
    tail -20 "$work/serve.log"
    echo "the server exited before its first page"
    exit 1
  fi
  sleep 1
done
elapsed=$(($(date +%s) - start))
crates=$(grep -c '^ *Compiling ' "$work/serve.log" || true)
sdks=$(grep -o 'Compiling aws-[a-z0-9-]*' "$work/serve.log" | sed 's/Compiling //' | sort -u | tr '\n' ' ' || true)
echo "first page after $((elapsed / 60)) min $((elapsed % 60)) s, from a fresh clone with an empty target directory and $registry"
echo "$(nproc) cores; $crates crates compiled; AWS crates compiled: ${sdks:-none}"
