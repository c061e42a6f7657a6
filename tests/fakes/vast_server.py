#!/usr/bin/env python3
"""A small fake of Vast.ai's REST API (/api/v0) for the vast_ai provider's tests, on 127.0.0.1.

It answers with the documented response shapes: offer search (POST /bundles/ with a query of
{"field": {"op": value}}, "order", "limit"), create from an ask (PUT /asks/{id}/ ->
{"success": true, "new_contract": id}), instances (GET /instances/?owner=me ->
{"instances": [...]}, GET /instances/{id}/ -> {"instances": {...}}), start/stop (PUT
/instances/{id}/ {"state": ...}), destroy (DELETE /instances/{id}/), SSH keys (POST
/instances/{id}/ssh/), and errors as {"success": false, "error": code, "msg": text}.
Search returns at most `limit` offers (capped at 256): clients must page.

Test hooks (no auth): POST /_fail {"path": prefix, "method": M, "status": N, "count": n}
makes the next n matching calls fail; GET /_state shows instances, SSH keys and calls.

Usage: vast_server.py --api-key KEY [--offers N]; prints "port <n>" once listening.
"""

import argparse
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODELS = [("RTX 4090", 24564, 89), ("RTX 3090", 24576, 86), ("A100 SXM4", 81920, 80),
          ("H100 SXM", 81559, 90), ("RTX A6000", 49140, 86)]
REGIONS = ["US-East", "US-West", "Sweden, SE", "Japan, JP", "Germany, DE"]
PAGE_CAP = 256


def make_offers(n):
    rng = random.Random(7)
    offers = []
    for i in range(n):
        model, ram, cap = MODELS[i % len(MODELS)]
        gpus = [1, 2, 4, 8][(i // len(MODELS)) % 4]
        offers.append({
            "id": 10000 + i * 3,
            "machine_id": 60000 + i,
            "gpu_name": model,
            "num_gpus": gpus,
            "gpu_ram": ram,
            "cpu_cores_effective": float(4 * gpus),
            "cpu_ram": 32768 * gpus,
            "disk_space": 100.0 * gpus,
            "dph_total": round(gpus * (0.2 + rng.random() * 2.0), 4),
            "geolocation": REGIONS[(i // 3) % len(REGIONS)],
            "rentable": i % 10 != 9,
            "rented": False,
            "reliability2": round(0.9 + rng.random() * 0.1, 4),
            "compute_cap": cap,
            "score": round(rng.random() * 10, 2),
        })
    return offers


class State:
    def __init__(self, api_key, offers):
        self.api_key = api_key
        self.offers = {o["id"]: o for o in make_offers(offers)}
        self.instances = {}
        self.ssh_keys = {}
        self.next_contract = 5000000
        self.failures = []
        self.calls = []
        self.lock = threading.Lock()


def matches(offer, query):
    for field, cond in query.items():
        if field in ("order", "limit", "type", "allocated_storage") or not isinstance(cond, dict):
            continue
        value = offer.get(field)
        for op, want in cond.items():
            ok = {"eq": lambda: value == want, "neq": lambda: value != want,
                  "gt": lambda: value is not None and value > want,
                  "gte": lambda: value is not None and value >= want,
                  "lt": lambda: value is not None and value < want,
                  "lte": lambda: value is not None and value <= want}.get(op)
            if ok is None or not ok():
                return False
    return True


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-vast/1"

    def log_message(self, *args):
        pass

    @property
    def st(self):
        return self.server.state

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, code, msg):
        self.reply(status, {"success": False, "error": code, "msg": msg})

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def handle_any(self, method):
        path = self.path
        if path == "/_state" and method == "GET":
            with self.st.lock:
                return self.reply(200, {"instances": self.st.instances, "ssh_keys": self.st.ssh_keys,
                                        "calls": self.st.calls})
        if path == "/_fail" and method == "POST":
            with self.st.lock:
                self.st.failures.append(self.body())
            return self.reply(200, {"success": True})
        if not path.startswith("/api/v0/"):
            return self.error(404, "not_found", "no such endpoint")
        if self.headers.get("Authorization") != f"Bearer {self.st.api_key}":
            return self.error(401, "auth_error", "invalid or missing API key")
        route = path[len("/api/v0"):]
        body = self.body() if method in ("POST", "PUT") else {}
        with self.st.lock:
            self.st.calls.append({"method": method, "path": route, "body": body})
            for f in self.st.failures:
                if f["count"] > 0 and route.startswith(f["path"]) and f.get("method", method) == method:
                    f["count"] -= 1
                    code = "rate_limited" if f["status"] == 429 else "server_error"
                    return self.error(f["status"], code, "injected failure")
            if body is None:
                return self.error(400, "invalid_args", "body is not JSON")
            return self.route(method, route, body)

    def route(self, method, route, body):
        st = self.st
        if route == "/bundles/" and method == "POST":
            limit = min(int(body.get("limit", 64)), PAGE_CAP)
            found = [o for o in st.offers.values() if matches(o, body)]
            for field, direction in reversed(body.get("order", [])):
                found.sort(key=lambda o: o.get(field) or 0, reverse=direction == "desc")
            return self.reply(200, {"offers": found[:limit]})
        m = re.fullmatch(r"/asks/(\d+)/", route)
        if m and method == "PUT":
            offer = st.offers.get(int(m.group(1)))
            if offer is None or not offer["rentable"] or offer["rented"]:
                return self.error(400, "no_such_ask", "this offer is no longer available")
            if not body.get("image"):
                return self.error(400, "invalid_args", "image is required")
            offer["rented"] = True
            st.next_contract += 1
            cid = st.next_contract
            st.instances[str(cid)] = {
                "id": cid, "machine_id": offer["machine_id"], "label": body.get("label"),
                "image_uuid": body["image"], "onstart": body.get("onstart"),
                "actual_status": "loading", "intended_status": "running",
                "gpu_name": offer["gpu_name"], "num_gpus": offer["num_gpus"],
                "dph_total": offer["dph_total"], "ssh_host": "ssh5.vast.ai",
                "ssh_port": 20000 + cid % 10000, "public_ipaddr": "198.51.100.%d" % (cid % 250),
                "start_date": time.time(), "reads": 0,
            }
            return self.reply(200, {"success": True, "new_contract": cid})
        if route.startswith("/instances/?") and method == "GET":
            return self.reply(200, {"instances": list(st.instances.values())})
        m = re.fullmatch(r"/instances/(\d+)/", route)
        if m:
            inst = st.instances.get(m.group(1))
            if inst is None:
                return self.error(404, "no_such_instance", "instance not found")
            if method == "GET":
                # Boots after it has been looked at once.
                inst["reads"] += 1
                if inst["actual_status"] == "loading" and inst["reads"] > 1:
                    inst["actual_status"] = "running"
                return self.reply(200, {"instances": inst})
            if method == "PUT":
                state = body.get("state")
                if state not in ("running", "stopped"):
                    return self.error(400, "invalid_args", "state must be running or stopped")
                inst["intended_status"] = state
                inst["actual_status"] = "running" if state == "running" else "exited"
                return self.reply(200, {"success": True})
            if method == "DELETE":
                del st.instances[m.group(1)]
                return self.reply(200, {"success": True})
        m = re.fullmatch(r"/instances/(\d+)/ssh/", route)
        if m and method == "POST":
            if m.group(1) not in st.instances:
                return self.error(404, "no_such_instance", "instance not found")
            st.ssh_keys.setdefault(m.group(1), []).append(body.get("ssh_key"))
            return self.reply(200, {"success": True})
        return self.error(404, "not_found", "no such endpoint")

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_DELETE(self):
        self.handle_any("DELETE")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--api-key", required=True)
    p.add_argument("--offers", type=int, default=400)
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.state = State(args.api_key, args.offers)
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
