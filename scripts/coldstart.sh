#!/usr/bin/env bash
# Cold start of the Lambda artifact as several functions: its release build for this machine
# is started with GPUFLEET_FUNCTION set as the template sets it, against a minimal Lambda
# Runtime API on 127.0.0.1 (tests/src/bin/coldstart.rs), handed one sample event, and timed
# from exec to ready (first `next`), to its answer, with its peak RSS. The store is DynamoDB
# on the emulator (moto on 127.0.0.1, plain HTTP: no TLS handshake, unlike AWS), so answers
# that read the table include one real SDK round trip.
# Prints numbers, asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-15}"
cargo build --release -p gpufleet-functions --bin gpufleet-lambda -p gpufleet-tests --bin gpufleet-coldstart

# The emulator, with a table to read.
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p target
.venv/bin/python scripts/moto_server.py "$port" > target/coldstart-moto.log 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q ready target/coldstart-moto.log 2>/dev/null && break; sleep 0.2; done

# What a deployed function has in its environment (template.yaml), with dummy values.
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
# The table exactly as template.yaml declares it (keys and indexes).
.venv/bin/python - <<'PY'
import os, boto3, yaml
class Loader(yaml.SafeLoader):
    pass
Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
table = yaml.load(open("template.yaml"), Loader)["Resources"]["Table"]["Properties"]
boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_table(
    TableName="gpufleet-coldstart", BillingMode="PAY_PER_REQUEST",
    **{k: table[k] for k in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")})
PY
export GPUFLEET_TABLE=gpufleet-coldstart GPUFLEET_DEPLOYMENT=gpufleet
export GPUFLEET_QUEUE_URL=http://127.0.0.1:9/123456789012/launch
export GPUFLEET_API_URL=https://abc123.execute-api.us-east-1.amazonaws.com
export GPUFLEET_AMI=ami-0123456789abcdef0 GPUFLEET_AGENT_URL=https://downloads.example.org/gpufleet
export GPUFLEET_ADMIN_PASSWORD=coldstart-password RUST_LOG=info
# Lambda sets neither; a captured backtrace would cost an error path tens of MiB.
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

echo "machine: $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d); $runs starts each"
measure() {
  GPUFLEET_FUNCTION="$1" target/release/gpufleet-coldstart --bootstrap target/release/gpufleet-lambda \
    --event "events/$2" --runs "$runs" --log "target/coldstart-fn-$1.log"
}
rm -f target/coldstart-fn-*.log
measure home home/get.json
measure request-vm request-vm/injection.json
measure get-request get-request/no-key.json
measure create-api-key create-api-key/no-auth.json
measure provision provision/poison.json
