"""Schemathesis hooks: half of the positive cases of an operation that names a VM name the
seeded VM, so the VM routes are exercised past authentication with its real token (a random
hostname never matches a token). Negative cases are left as generated."""

import os
import random

import schemathesis
from schemathesis.generation import GenerationMode

HOSTNAME = os.environ["CONTRACT_VM_HOSTNAME"]


@schemathesis.hook
def map_case(context, case):
    meta = getattr(case, "meta", None)
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE or random.random() < 0.5:
        return case
    if isinstance(case.path_parameters, dict) and "hostname" in case.path_parameters:
        case.path_parameters["hostname"] = HOSTNAME
    if isinstance(case.body, dict) and isinstance(case.body.get("hostname"), str):
        case.body["hostname"] = HOSTNAME
    return case
