"""Schemathesis against the local server, with the server's own OpenAPI document.

Starts `gpufleet serve` on 127.0.0.1 with a fresh data directory holding one seeded VM
(whose token is the VM credential) and one API key, then runs every operation of
`/openapi.json` with valid credentials for each security scheme, positive and negative
cases, and fails on any server error or any answer the document does not describe.

    .venv/bin/python tests/api_contract/run.py [path to the gpufleet binary]
"""

import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "target" / "debug" / "gpufleet"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).with_name("schemathesis.toml")
PASSWORD = "contract-test-password"


def main() -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="gpufleet-contract-"))
    tokens = data_dir / "vm-tokens.json"
    subprocess.run(
        [BIN, "seed-vms", "--data-dir", data_dir, "--count", "1",
         "--prefix", "contract-vm", "--tokens-out", tokens],
        check=True,
    )
    vm = json.loads(tokens.read_text())[0]
    api_key = subprocess.run(
        [BIN, "api-key", "--data-dir", data_dir, "--user", "contract-user"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    env = dict(
        os.environ,
        GPUFLEET_ADMIN_PASSWORD=PASSWORD,
        # Many requests come from one address within a minute: high limits, so the answers
        # are the operations' own (429 is still in the document and checked as such).
        GPUFLEET_RATE_LIMIT_PER_MINUTE="100000",
        GPUFLEET_KEY_RATE_LIMIT_PER_MINUTE="100000",
        GPUFLEET_CLAIMS_PER_IP_PER_HOUR="100000",
        # Every refusal of a wrong password is checked: the throttle would answer 429 instead.
        GPUFLEET_ADMIN_LOGIN_FAILURES_PER_MINUTE="100000",
        # Launches start real agent processes and destroys wait for their final sync: keep
        # both small so the run stays within a couple of minutes.
        GPUFLEET_MAX_LAUNCH="2",
        GPUFLEET_COLLECT_FINAL_WAIT_SECONDS="1",
        GPUFLEET_LONG_POLL_SECONDS="1",
        RUST_LOG="warn",
    )
    server = subprocess.Popen(
        [BIN, "serve", "--addr", "127.0.0.1:0", "--data-dir", data_dir,
         "--agent-boot-delay-secs", "1"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    url = None
    try:
        # The server announces its URL on stdout; a server that hangs silently fails here.
        ready = select.select([server.stdout], [], [], 60)[0]
        while ready:
            line = server.stdout.readline()
            if not line:
                break
            if line.startswith("gpufleet local mode:"):
                url = line.strip().split(" ")[-1].rstrip("/")
                break
            ready = select.select([server.stdout], [], [], 60)[0]
        if url is None:
            print("the server did not start", file=sys.stderr)
            return 1
        print(f"server at {url}; VM {vm['hostname']}; API key for contract-user", flush=True)
        known = existing_resources(url, api_key, data_dir)
        print(f"resources the operations can find: {sorted(known)}", flush=True)
        missing = sorted(set(KNOWN_NAMES) - set(known))
        if missing:
            # Without them half the positive cases would test only the lookups.
            print(f"could not create what the paths name: {missing}", file=sys.stderr)
            return 1
        run_env = dict(
            os.environ,
            CONTRACT_ADMIN_PASSWORD=PASSWORD,
            CONTRACT_API_KEY=api_key,
            CONTRACT_VM_TOKEN=vm["token"],
            CONTRACT_VM_HOSTNAME=vm["hostname"],
            CONTRACT_KNOWN=json.dumps(known),
            SCHEMATHESIS_HOOKS="hooks",
            PYTHONPATH=str(Path(__file__).parent),
        )
        started = time.time()
        result = subprocess.run(
            [SCHEMATHESIS, "--config-file", CONFIG, "run", f"{url}/openapi.json",
             "--url", url],
            env=run_env, cwd=data_dir,
        )
        print(f"schemathesis: exit {result.returncode} in {time.time() - started:.0f} s")
        if result.returncode != 0:
            return result.returncode
        if not real_bodies_match_the_document(url):
            return 1
        return check_that_a_wrong_document_fails(url, run_env, data_dir)
    finally:
        if url is not None:
            # The launches of the run started agent processes: end them with their VMs.
            call(url, "POST", "/destroy", {"confirm": "yes", "confirm_in_use": "yes"},
                 {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode(),
                  "Accept": "application/json"}, form=True)
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


def call(url, method, path, body=None, headers=None, form=False):
    data = None
    headers = dict(headers or {})
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"{url}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


KNOWN_NAMES = ("request_id", "instance_id", "key_id", "gpu_type", "operation_id", "token")


def existing_resources(url, api_key, data_dir):
    """Creates one of each thing a path can name, so operations reach their logic with an id
    that exists (hooks.py substitutes them into half of the positive cases)."""
    admin = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode(),
             "Accept": "application/json"}
    user = {"Authorization": f"Bearer {api_key}"}
    known = {}
    status, text = call(url, "POST", "/api/v1/requests",
                        {"user_id": "contract-user", "gpu_count": 1, "duration_hours": 1}, user)
    if status == 201:
        known["request_id"] = json.loads(text)["request_id"]
    status, text = call(url, "GET", "/api/v1/offers/search?limit=1", headers=user)
    offers = json.loads(text).get("data") or [] if status == 200 else []
    if offers:
        offer = offers[0]
        status, text = call(url, "POST", "/api/v1/instances",
                            {"provider": offer["provider"], "offer_id": offer["id"].split(":", 1)[-1]},
                            user)
        if status == 201:
            known["instance_id"] = json.loads(text)["data"]["id"]
    # A key of its own to revoke: the contract key must keep working.
    status, text = call(url, "POST", "/api/v1/api-keys", {"user_id": "contract-spare"}, admin)
    if status == 201:
        known["key_id"] = json.loads(text)["key_id"]
    status, text = call(url, "GET", "/api/gpu-types", headers=admin)
    types = json.loads(text).get("data") or [] if status == 200 else []
    if types:
        known["gpu_type"] = types[0]["name"]
    status, text = call(url, "POST", "/api/launch", {"num_vms": 1}, admin, form=True)
    if status == 202:
        known["operation_id"] = json.loads(text)["operation_id"]
    status, text = call(url, "POST", "/request_vm",
                        {"email": "contract@example.org", "crd_command": "--code=4/contract-test"},
                        form=True)
    seat = re.search(r"/seat/([A-Za-z0-9_-]{16,})", text)
    if seat:
        known["token"] = seat.group(1)
    return known


# What the agent (local/src/agent.rs, local/src/agent/collector.rs) and the boot script
# (shared/src/adapters/aws/ec2/user_data.sh) really send: generated cases may never combine
# fields the way they do.
REAL_BODIES = [
    ("/vm_startup", {"hostname": "vm-1", "after": 1700000000000, "collected": 1700000000000}),
    ("/api/vm-status", {"hostname": "vm-1", "status": "running"}),
    ("/api/vm-status", {"hostname": "vm-1", "status": "error", "reason": "nvidia-smi failed"}),
    ("/api/gpu_health", {"hostname": "vm-1", "gpu_status": "healthy"}),
    ("/api/update_inuse_status", {"hostname": "vm-1", "status": True}),
    ("/api/vm-metrics/{hostname}",
     {"agent_start": 1700000000.0, "agent_end": 1700000004.5, "agent_duration_seconds": 4.5}),
    ("/api/vm-metrics/{hostname}", {"cloud_init_start": 1700000000.0, "cloud_init_end": 1700000090.0}),
    ("/api/vm-logs/{hostname}", {"messages": ["agent[vm-1] started", "second line"]}),
    ("/api/collect/plan", {"hostname": "vm-1", "files": []}),
    ("/api/collect/plan", {"hostname": "vm-1", "files": [
        {"path": "results/run 1.slp", "size": 200000, "sha256": "ab" * 32}]}),
    ("/api/collect/done", {"hostname": "vm-1", "uploaded": [
        {"path": "results/run 1.slp", "size": 200000, "sha256": "ab" * 32}],
        "refused": [{"path": "big.slp", "reason": "larger than the per-file cap"}],
        "answering": 1700000000000}),
]


def real_bodies_match_the_document(url):
    import jsonschema_rs

    with urllib.request.urlopen(f"{url}/openapi.json") as resp:
        doc = json.load(resp)
    ok = True
    for path, body in REAL_BODIES:
        schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
                "components": doc["components"]}
        errors = [e.message for e in jsonschema_rs.validator_for(root).iter_errors(body)]
        if errors:
            ok = False
            print(f"POST {path}: the document refuses what the agent sends {body}: {errors}")
    if ok:
        print(f"the {len(REAL_BODIES)} bodies the agent and boot script send are valid by the document")
    return ok


def check_that_a_wrong_document_fails(url, run_env, data_dir):
    """The run above means something only if a document that disagrees with the server fails:
    the free-VM count documented as a string must be caught on the server's integer."""
    with urllib.request.urlopen(f"{url}/openapi.json") as resp:
        doc = json.load(resp)
    doc["components"]["schemas"]["FreeCount"]["properties"]["count"] = {"type": "string"}
    wrong = data_dir / "wrong-openapi.json"
    wrong.write_text(json.dumps(doc))
    result = subprocess.run(
        [SCHEMATHESIS, "--config-file", CONFIG, "run", wrong, "--url", url,
         "--include-operation-id", "unassigned-vms-count", "--phases", "examples,fuzzing"],
        env=run_env, cwd=data_dir, capture_output=True, text=True,
    )
    if result.returncode == 0 or "Response violates schema" not in result.stdout:
        print(result.stdout[-3000:])
        print("a document that disagrees with the server passed: the checks are not biting")
        return 1
    print("a document that disagrees with the server fails, as it must")
    return 0


if __name__ == "__main__":
    sys.exit(main())
