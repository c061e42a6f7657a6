#!/usr/bin/env python3
"""moto's server (the same WSGI app `moto_server` runs), serving one request at a time.

`moto_server` handles requests on threads with no lock around a DynamoDB condition check
and the write that follows, so two concurrent conditional writes can both succeed there.
DynamoDB makes each conditional write and each transaction atomic; serving requests one
at a time gives the emulator that property, so a race test's result is about our code.

Usage: scripts/moto_server.py PORT   (binds 127.0.0.1; prints "ready" once listening)
"""
import os
import sys

from werkzeug.serving import BaseWSGIServer, make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

port = int(sys.argv[1])
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
# Hundreds of clients connect at once in the race tests; werkzeug's default backlog (128)
# drops the rest of their SYNs, and their connects time out.
BaseWSGIServer.request_queue_size = 4096
server = make_server("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
print("ready", flush=True)
server.serve_forever()
