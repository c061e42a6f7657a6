#!/usr/bin/env python3
"""Writes the sample events in this folder: API Gateway HTTP API (payload v2.0) requests,
one folder per Lambda function. Handler tests and `cargo lambda invoke --data-file` use
them. Re-run after changing a case: python3 events/generate.py"""
import base64, gzip, hashlib, json, os

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN = "Basic " + base64.b64encode(b"admin:admin-password").decode()


def http_event(method, path, route, body=None, headers=None, path_params=None, form=False, query=None):
    hdrs = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": "curl/8.5.0"}
    if body is not None:
        hdrs["content-type"] = "application/x-www-form-urlencoded" if form else "application/json"
    hdrs.update(headers or {})
    event = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": hdrs["host"],
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "22/Nov/2026:06:00:00 +0000",
            "timeEpoch": 1795327200000,
        },
        "isBase64Encoded": False,
    }
    if path_params:
        event["pathParameters"] = path_params
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def vm(token_of="vm-1"):
    return {"authorization": f"Bearer token-{token_of}"}


CASES = {
    "home/get.json": http_event("GET", "/", "/"),
    "request-vm/claim.json": http_event(
        "POST", "/api/request_vm", "/api/request_vm",
        "email=participant%40example.org&crd_command=DISPLAY%3D+%2Fopt%2Fgoogle%2Fchrome-remote-desktop%2Fstart-host+--code%3D%224%2F0AbCdEf%22+--redirect-url%3D%22https%3A%2F%2Fremotedesktop.google.com%2F_%2Foauthredirect%22+--name%3D%24%28hostname%29",
        form=True),
    "request-vm/injection.json": http_event(
        "POST", "/request_vm", "/request_vm",
        "email=participant%40example.org&crd_command=--code%3Dabc%3Bid", form=True),
    "seat-page/cookie.json": http_event("GET", "/seat", "/seat", headers={"cookie": "gpufleet_seat=" + "a" * 64}),
    "seat-page/link.json": http_event("GET", "/seat/" + "b" * 64, "/seat/{token}", path_params={"token": "b" * 64}),
    "seat-command/send.json": http_event(
        "POST", "/seat/command", "/seat/command",
        "crd_command=--code%3D%224%2F0AbCdEf%22", form=True, headers={"cookie": "gpufleet_seat=" + "a" * 64}),
    "seat-move/move.json": http_event(
        "POST", "/seat/" + "b" * 64 + "/move", "/seat/{token}/move", path_params={"token": "b" * 64}),
    "reissue-seat/reissue.json": http_event(
        "POST", "/api/seats/vm-1/reissue", "/api/seats/{hostname}/reissue", headers={"authorization": ADMIN},
        path_params={"hostname": "vm-1"}),
    "move-seat/move.json": http_event(
        "POST", "/api/seats/vm-1/move", "/api/seats/{hostname}/move", headers={"authorization": ADMIN},
        path_params={"hostname": "vm-1"}),
    "vm-startup/poll.json": http_event("POST", "/vm_startup", "/vm_startup", {"hostname": "vm-1"}, vm()),
    "vm-startup/missing-hostname.json": http_event("POST", "/vm_startup", "/vm_startup", {}, vm()),
    "vm-startup/unknown-vm.json": http_event("POST", "/vm_startup", "/vm_startup", {"hostname": "vm-404"}, vm()),
    "vm-startup/wrong-token.json": http_event("POST", "/vm_startup", "/vm_startup", {"hostname": "vm-1"}, vm("vm-2")),
    "unassigned-vms-count/get.json": http_event("GET", "/api/unassigned_vms_count", "/api/unassigned_vms_count"),
    "update-inuse-status/in-use.json": http_event(
        "POST", "/api/update_inuse_status", "/api/update_inuse_status", {"hostname": "vm-1", "status": True}, vm()),
    "update-inuse-status/wrong-type.json": http_event(
        "POST", "/api/update_inuse_status", "/api/update_inuse_status", {"hostname": "vm-1", "status": "yes"}, vm()),
    "gpu-health/unhealthy.json": http_event(
        "POST", "/api/gpu_health", "/api/gpu_health", {"hostname": "vm-1", "gpu_status": "unhealthy"}, vm()),
    "report-vm-status/running.json": http_event(
        "POST", "/api/vm-status", "/api/vm-status", {"hostname": "vm-1", "status": "running"}, vm()),
    "report-vm-status/bogus.json": http_event(
        "POST", "/api/vm-status", "/api/vm-status", {"hostname": "vm-1", "status": "available"}, vm()),
    "list-vm-status/admin.json": http_event("GET", "/api/vm-status", "/api/vm-status", headers={"authorization": ADMIN}),
    "list-vm-status/no-auth.json": http_event("GET", "/api/vm-status", "/api/vm-status"),
    "get-vm-status/vm-1.json": http_event(
        "GET", "/api/vm-status/vm-1", "/api/vm-status/{hostname}", headers={"authorization": ADMIN},
        path_params={"hostname": "vm-1"}),
    "get-vm-status/unknown.json": http_event(
        "GET", "/api/vm-status/vm-404", "/api/vm-status/{hostname}", headers={"authorization": ADMIN},
        path_params={"hostname": "vm-404"}),
    "launch/two-vms.json": http_event(
        "POST", "/api/launch", "/api/launch", "num_vms=2",
        {"authorization": ADMIN, "accept": "application/json"}, form=True),
    "launch/zero-vms.json": http_event(
        "POST", "/admin/create", "/admin/create", "instance_count=0",
        {"authorization": ADMIN, "accept": "application/json"}, form=True),
    "destroy/admin.json": http_event(
        "POST", "/admin/destroy", "/admin/destroy", "", {"authorization": ADMIN, "accept": "application/json"}, form=True),
    "destroy/cross-site.json": http_event(
        "POST", "/destroy", "/destroy", "",
        {"authorization": ADMIN, "origin": "https://evil.example", "sec-fetch-site": "cross-site"}, form=True),
    "get-operation/unknown.json": http_event(
        "GET", "/api/operations/00000000-0000-0000-0000-000000000000", "/api/operations/{id}",
        headers={"authorization": ADMIN}, path_params={"id": "00000000-0000-0000-0000-000000000000"}),
    "admin-dashboard/get.json": http_event("GET", "/admin", "/admin", headers={"authorization": ADMIN}),
    "admin-instances/json.json": http_event(
        "GET", "/admin/instances", "/admin/instances", headers={"authorization": ADMIN, "accept": "application/json"}),
    "admin-logs/vm-1.json": http_event(
        "GET", "/admin/logs/vm-1", "/admin/logs/{hostname}", headers={"authorization": ADMIN},
        path_params={"hostname": "vm-1"}),
    "admin-metrics/get.json": http_event("GET", "/admin/metrics", "/admin/metrics", headers={"authorization": ADMIN}),
    "vm-metrics/cloud-init.json": http_event(
        "POST", "/api/vm-metrics/vm-1", "/api/vm-metrics/{hostname}",
        {"cloud_init_start": 1795327200, "cloud_init_end": 1795327260, "cloud_init_duration_seconds": 60},
        vm(), path_params={"hostname": "vm-1"}),
    "vm-metrics/bad-value.json": http_event(
        "POST", "/api/vm-metrics/vm-1", "/api/vm-metrics/{hostname}", {"cloud_init_start": "yesterday"},
        vm(), path_params={"hostname": "vm-1"}),
    "ingest-vm-logs/cloudwatch-shape.json": http_event(
        "POST", "/api/vm-logs", "/api/vm-logs",
        {"log_group": "/gpufleet/vms", "log_stream": "vm-1",
         "messages": ["\u001b[32mCloud-init v. 24.1 running\u001b[0m", "agent: started"]},
        {"authorization": ADMIN}),
    "push-vm-logs/lines.json": http_event(
        "POST", "/api/vm-logs/vm-1", "/api/vm-logs/{hostname}", {"messages": ["agent: running", "agent: waiting"]},
        vm(), path_params={"hostname": "vm-1"}),
    "get-vm-logs/vm-1.json": http_event(
        "GET", "/api/vm-logs/vm-1", "/api/vm-logs/{hostname}", headers={"authorization": ADMIN},
        path_params={"hostname": "vm-1"}),
}

def logs_event(stream, messages):
    data = {
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/gpufleet/vms",
        "logStream": stream, "subscriptionFilters": ["gpufleet-vm-logs"],
        "logEvents": [{"id": str(i), "timestamp": 1795327200000 + i, "message": m} for i, m in enumerate(messages)],
    }
    # mtime=0: the same bytes every time the file is regenerated
    packed = gzip.compress(json.dumps(data).encode(), mtime=0)
    return {"awslogs": {"data": base64.b64encode(packed).decode()}}


def log_stream(hostname):
    """`<hostname>.<proof>`, as TokenHash::log_stream writes it for the VM's token."""
    token_hash = hashlib.sha256(f"token-{hostname}".encode()).hexdigest()
    proof = hashlib.sha256(b"gpufleet log stream\0" + token_hash.encode()).digest()[:16].hex()
    return f"{hostname}.{proof}"


CASES["logs-subscriber/vm-logs.json"] = logs_event(
    log_stream("vm-1"), ["Cloud-init v. 24.1 running 'modules:final'", "gpufleet agent: running after 41.2 s"])

def sqs_record(message_id, body, receive_count=1):
    return {
        "messageId": message_id, "receiptHandle": f"receipt-{message_id}", "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": str(receive_count), "SentTimestamp": "1795327200000",
                       "SenderId": "AROAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1795327200100"},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:gpufleet-LaunchQueue",
        "awsRegion": "us-east-1",
    }


# Two launch jobs, as admin::launch_vms enqueues them (the token is vm-2's plain token, as
# launch jobs carry it to the user_data), and one message that is not a job at all.
CASES["provision/launch-jobs.json"] = {"Records": [
    sqs_record("11111111-1111-4111-8111-111111111111",
               {"v": 1, "kind": "launch_vm", "operation_id": "op-1", "hostname": "vm-2", "token": "00" * 32}),
    sqs_record("22222222-2222-4222-8222-222222222222",
               {"v": 1, "kind": "launch_vm", "operation_id": "op-1", "hostname": "vm-3", "token": "11" * 32}, 2),
    sqs_record("33333333-3333-4333-8333-333333333333", {"v": 99, "kind": "unknown"}),
]}

# The requests API: a sample API key (the handler tests register it for user alice).
KEY = {"authorization": "Bearer gpf_" + "ab" * 32}
REQ = "6f1c2b9e-8d4a-4c3b-9e2f-1a2b3c4d5e6f"
CASES["reconcile-now/run.json"] = http_event(
    "POST", "/api/reconcile", "/api/reconcile", headers={"authorization": ADMIN})
CASES["health/ok.json"] = http_event("GET", "/health", "/health")
CASES["openapi/get.json"] = http_event("GET", "/openapi.json", "/openapi.json")
CASES["api-docs/get.json"] = http_event("GET", "/docs", "/docs")
CASES["create-request/four-gpus.json"] = http_event(
    "POST", "/api/v1/requests", "/api/v1/requests",
    {"user_id": "alice", "gpu_count": 4, "duration_hours": 2}, {**KEY, "idempotency-key": "sample-1"})
CASES["list-requests/mine.json"] = http_event(
    "GET", "/api/v1/requests", "/api/v1/requests", headers=KEY, query={"limit": "10"})
CASES["get-request/no-key.json"] = http_event(
    "GET", f"/api/v1/requests/{REQ}", "/api/v1/requests/{request_id}", path_params={"request_id": REQ})
CASES["release-request/release.json"] = http_event(
    "POST", f"/api/v1/requests/{REQ}/release", "/api/v1/requests/{request_id}/release", headers=KEY,
    path_params={"request_id": REQ})
CASES["create-api-key/alice.json"] = http_event(
    "POST", "/api/v1/api-keys", "/api/v1/api-keys", {"user_id": "alice", "gpu_quota": 8, "label": "laptop"},
    {"authorization": ADMIN})
CASES["create-api-key/no-auth.json"] = http_event(
    "POST", "/api/v1/api-keys", "/api/v1/api-keys", {"user_id": "alice"})
CASES["list-api-keys/all.json"] = http_event(
    "GET", "/api/v1/api-keys", "/api/v1/api-keys", headers={"authorization": ADMIN})
CASES["revoke-api-key/revoke.json"] = http_event(
    "DELETE", "/api/v1/api-keys/0123456789ab", "/api/v1/api-keys/{key_id}", headers={"authorization": ADMIN},
    path_params={"key_id": "0123456789ab"})
# The offers and instances API (same sample key; the handler tests configure no cloud, so a
# create names the unconfigured provider).
INST = "vast_0123456789abcdef"
CASES["list-providers/mine.json"] = http_event("GET", "/api/v1/providers", "/api/v1/providers", headers=KEY)
CASES["search-offers/a10g-under-2.json"] = http_event(
    "GET", "/api/v1/offers/search", "/api/v1/offers/search", headers=KEY,
    query={"gpu_model": "A10G", "max_price": "2.0", "available": "true"})
CASES["search-offers/bad-price.json"] = http_event(
    "GET", "/api/v1/offers/search", "/api/v1/offers/search", headers=KEY, query={"max_price": "cheap"})
CASES["list-instances/mine.json"] = http_event("GET", "/api/v1/instances", "/api/v1/instances", headers=KEY)
CASES["create-instance/vast.json"] = http_event(
    "POST", "/api/v1/instances", "/api/v1/instances",
    {"provider": "vast_ai", "offer_id": "12345", "image": "pytorch/pytorch:latest", "label": "My Training Instance",
     "onstart_script": "#!/bin/bash\necho started"}, {**KEY, "idempotency-key": "sample-2"})
CASES["get-instance/unknown.json"] = http_event(
    "GET", f"/api/v1/instances/{INST}", "/api/v1/instances/{id}", headers=KEY, path_params={"id": INST})
CASES["start-instance/no-key.json"] = http_event(
    "POST", f"/api/v1/instances/{INST}/start", "/api/v1/instances/{id}/start", path_params={"id": INST})
CASES["stop-instance/unknown.json"] = http_event(
    "POST", f"/api/v1/instances/{INST}/stop", "/api/v1/instances/{id}/stop", headers=KEY, path_params={"id": INST})
CASES["destroy-instance/unknown.json"] = http_event(
    "DELETE", f"/api/v1/instances/{INST}", "/api/v1/instances/{id}", headers=KEY, path_params={"id": INST})
CASES["command-log/first-page.json"] = http_event(
    "GET", "/api/command-log", "/api/command-log", headers={"authorization": ADMIN}, query={"limit": "50"})
CASES["command-log/bad-cursor.json"] = http_event(
    "GET", "/api/command-log", "/api/command-log", headers={"authorization": ADMIN}, query={"cursor": "x"})
CASES["clear-log/clear.json"] = http_event(
    "POST", "/api/clear-log", "/api/clear-log", headers={"authorization": ADMIN})
# Capacity pools (the handler tests' state has vm-1, a g4dn.xlarge: one T4).
CASES["gpu-types/all.json"] = http_event("GET", "/api/gpu-types", "/api/gpu-types", headers=KEY)
CASES["get-aggregates/t4.json"] = http_event(
    "GET", "/api/aggregates/T4", "/api/aggregates/{gpu_type}", headers=KEY, path_params={"gpu_type": "T4"})
CASES["get-aggregates/unknown-kind.json"] = http_event(
    "GET", "/api/aggregates/T4/cheap", "/api/aggregates/{gpu_type}/{aggregate_type}", headers=KEY,
    path_params={"gpu_type": "T4", "aggregate_type": "cheap"})
CASES["contract-aggregates/t4.json"] = http_event(
    "GET", "/api/contract-aggregates/T4", "/api/contract-aggregates/{gpu_type}", headers=KEY,
    path_params={"gpu_type": "T4"})
CASES["host-vms/vm-1.json"] = http_event(
    "GET", "/api/host-vms/vm-1", "/api/host-vms/{hostname}", headers=KEY, path_params={"hostname": "vm-1"})
CASES["preview-migration/vm-1-to-spot.json"] = http_event(
    "POST", "/api/preview-migration", "/api/preview-migration",
    {"host": "vm-1", "source_aggregate": "T4-ondemand", "target_aggregate": "T4-spot"},
    {"authorization": ADMIN})
CASES["execute-migration/no-key.json"] = http_event(
    "POST", "/api/execute-migration", "/api/execute-migration",
    {"host": "vm-1", "source_aggregate": "T4-ondemand", "target_aggregate": "T4-spot"})
CASES["get-target-aggregate/vm-1.json"] = http_event(
    "POST", "/api/get-target-aggregate", "/api/get-target-aggregate", {"hostname": "vm-1", "gpu_type": "T4"}, KEY)
# Network and firewall (the handler tests' state has no EC2 network: reads answer 503 saying so).
CASES["network-show/storage.json"] = http_event(
    "POST", "/api/openstack/network/show", "/api/openstack/network/show", {"network_name": "storage-network"}, KEY)
CASES["port-create/no-auth.json"] = http_event(
    "POST", "/api/openstack/port/create", "/api/openstack/port/create",
    {"network_id": "subnet-0123abcd", "port_name": "storage-port-001"})
CASES["server-add-network/attach.json"] = http_event(
    "POST", "/api/openstack/server/add-network", "/api/openstack/server/add-network",
    {"server_uuid": "i-0123456789abcdef0", "port_id": "eni-0123456789abcdef0"}, {"authorization": ADMIN})
CASES["server-get-uuid/no-auth.json"] = http_event(
    "POST", "/api/openstack/server/get-uuid", "/api/openstack/server/get-uuid", {"server_name": "gpu-host-001"})
CASES["server-status/status.json"] = http_event(
    "POST", "/api/openstack/server/status", "/api/openstack/server/status", {"server_uuid": "i-0123456789abcdef0"}, KEY)
CASES["firewall-get-attachments/sg.json"] = http_event(
    "POST", "/api/hyperstack/firewall/get-attachments", "/api/hyperstack/firewall/get-attachments",
    {"firewall_id": "sg-0123456789abcdef0"}, KEY)
CASES["firewall-update-attachments/no-vm-ids.json"] = http_event(
    "POST", "/api/hyperstack/firewall/update-attachments", "/api/hyperstack/firewall/update-attachments",
    {"firewall_id": "sg-0123456789abcdef0"}, {"authorization": ADMIN})
CASES["list-images/bad-region.json"] = http_event(
    "GET", "/api/hyperstack/images", "/api/hyperstack/images", headers=KEY, query={"region": "US-EAST"})
CASES["preview-runpod-launch/vm-1.json"] = http_event(
    "POST", "/api/preview-runpod-launch", "/api/preview-runpod-launch",
    {"hostname": "vm-1", "image_name": "RunPod Ubuntu 22.04", "image_id": "ami-0123456789abcdef0"},
    {"authorization": ADMIN})
CASES["execute-runpod-launch/bad-image.json"] = http_event(
    "POST", "/api/execute-runpod-launch", "/api/execute-runpod-launch",
    {"hostname": "vm-1", "image_name": "RunPod Ubuntu 22.04", "image_id": "img-123456"}, {"authorization": ADMIN})
CASES["provision/poison.json"] = {"Records": [
    sqs_record("33333333-3333-4333-8333-333333333333", {"v": 99, "kind": "unknown"})]}

# EventBridge scheduled event (the reconcile function ignores its content).
CASES["reconcile/schedule.json"] = {
    "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
    "source": "aws.events", "account": "123456789012", "time": "2026-11-22T08:00:00Z", "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/gpufleet-ReconcileFunctionEvery5Minutes"],
    "detail": {},
}

# Participants' work: a VM's sync (plan, then done), the admin's download and delete.
SHA = hashlib.sha256(b"labels").hexdigest()
CASES["collect-plan/two-files.json"] = http_event(
    "POST", "/api/collect/plan", "/api/collect/plan",
    {"hostname": "vm-1", "files": [{"path": "labels/session1.slp", "size": 6, "sha256": SHA},
                                   {"path": "notes.txt", "size": 3, "sha256": SHA}]}, vm())
CASES["collect-plan/traversal.json"] = http_event(
    "POST", "/api/collect/plan", "/api/collect/plan",
    {"hostname": "vm-1", "files": [{"path": "../vm-2/stolen.slp", "size": 6, "sha256": SHA},
                                   {"path": "/etc/passwd.slp", "size": 6, "sha256": SHA},
                                   {"path": "bad\u0007name.slp", "size": 6, "sha256": SHA}]}, vm())
CASES["collect-plan/other-vm.json"] = http_event(
    "POST", "/api/collect/plan", "/api/collect/plan",
    {"hostname": "vm-2", "files": [{"path": "x.slp", "size": 6, "sha256": SHA}]}, vm("vm-1"))
CASES["collect-done/one-file.json"] = http_event(
    "POST", "/api/collect/done", "/api/collect/done",
    {"hostname": "vm-1", "uploaded": [{"path": "labels/session1.slp", "size": 6, "sha256": SHA}], "refused": []}, vm())
CASES["scp-client/zip.json"] = http_event(
    "GET", "/api/scp-client", "/api/scp-client", headers={"authorization": ADMIN})
CASES["scp-client/json.json"] = http_event(
    "GET", "/api/scp-client", "/api/scp-client", headers={"authorization": ADMIN, "accept": "application/json"})
CASES["scp-client/no-auth.json"] = http_event("GET", "/api/scp-client", "/api/scp-client")
CASES["delete-collected/json.json"] = http_event(
    "POST", "/api/collected/delete", "/api/collected/delete", "",
    {"authorization": ADMIN, "accept": "application/json"}, form=True)

for name, event in CASES.items():
    path = os.path.join(HERE, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(event, f, indent=2)
        f.write("\n")
print(f"wrote {len(CASES)} events")
