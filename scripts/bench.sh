#!/usr/bin/env bash
# Benchmark of the local server (release build): claims/s and latency at concurrency 64,
# double assignments, free-count req/s, and long-poll wake latency. Prints numbers; asserts
# nothing about speed. Usage: scripts/bench.sh [--vms N --claims N --concurrency C ...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gpufleet --bin gpufleet -p gpufleet-tests --bin gpufleet-bench
echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
exec target/release/gpufleet-bench --server target/release/gpufleet "$@"
