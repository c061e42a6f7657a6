"""Schemathesis hooks: half of the positive cases of an operation whose path names a thing
name one that exists (the seeded VM, a request, an instance, a spare API key, a pool type,
an operation, a participant's seat), so the operations are exercised past their lookups;
a random id is always a 404. Negative cases are left as generated."""

import json
import os
import random

import schemathesis
from schemathesis.generation import GenerationMode

HOSTNAME = os.environ["CONTRACT_VM_HOSTNAME"]
KNOWN = json.loads(os.environ.get("CONTRACT_KNOWN", "{}"))


def known_value(path, name):
    if name == "hostname":
        return HOSTNAME
    if name == "id":
        return KNOWN.get("instance_id" if path.startswith("/api/v1/instances") else "operation_id")
    return KNOWN.get(name)


@schemathesis.hook
def map_case(context, case):
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE or random.random() < 0.5:
        return case
    path = case.operation.path
    if isinstance(case.path_parameters, dict):
        for name in list(case.path_parameters):
            value = known_value(path, name)
            if value is not None:
                case.path_parameters[name] = value
    if isinstance(case.body, dict) and isinstance(case.body.get("hostname"), str):
        case.body["hostname"] = HOSTNAME
    return case
