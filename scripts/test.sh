#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need, then runs formatting,
# lints and every test. Safe to run on a fresh machine; repeat runs reuse what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "browser test: Debian's Chromium and playwright-core"
if ! command -v chromium >/dev/null 2>&1; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_ apt-get install -y -q chromium >/dev/null 2>&1 \
    || { $sudo_ apt-get update -q >/dev/null && $sudo_ apt-get install -y -q chromium >/dev/null; }
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

step "browser test: dashboard, logs, metrics, claim, destroy (screenshots in test-output/browser/)"
cargo build -p gpufleet --bin gpufleet --locked
(cd tests/browser && node --test dashboard.test.mjs)
