"""What sky_job and sky_service share: the lazily imported SkyPilot SDK, task validation with
SkyPilot's own loader and with the checks its API server runs, and SDK calls whose errors become
module failures."""

from __future__ import annotations

import copy
import csv
import glob
import importlib
import os
import re
import sys

# The SDK module to import. Tests point it at their recording fake of the SDK boundary.
SDK_ENV = "WF_SKY_SDK"
TERMINAL_JOB_STATUSES = {"SUCCEEDED", "CANCELLED", "FAILED", "FAILED_SETUP", "FAILED_PRECHECKS",
                         "FAILED_NO_RESOURCE", "FAILED_CONTROLLER"}


def import_sky(module):
    """The SkyPilot SDK, or a failure that says how to install it for this interpreter."""
    name = os.environ.get(SDK_ENV, "sky")
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        module.fail_json(msg=f"the SkyPilot SDK ({name}) cannot be imported by {sys.executable}: {exc}. "
                             "Install it there (pip install skypilot==0.14.1; the skypilot_node_pool role does) "
                             "or point ansible_python_interpreter at a Python that has it.")


def spec_text(spec):
    """A spec as YAML, for a diff. PyYAML is a dependency of SkyPilot, so it is there wherever
    import_sky() succeeded; imported here, not at the top, as nothing else needs it."""
    return importlib.import_module("yaml").safe_dump(spec, sort_keys=True)


def field(record, name):
    """A field of an SDK record, which is a dict or a pydantic model; enums as their value."""
    value = record.get(name) if isinstance(record, dict) else getattr(record, name, None)
    return getattr(value, "value", value)


def load_task(module, sky, spec, secrets):
    """Validate `spec` with SkyPilot's own loader and return the sky.Task; fail before any SDK call
    when a declared secret has no value or SkyPilot rejects the spec."""
    if not isinstance(spec, dict):
        module.fail_json(msg="task must be a mapping (a rendered SkyPilot task YAML)")
    missing = sorted(k for k, v in (spec.get("secrets") or {}).items() if v is None and not secrets.get(k))
    if missing:
        module.fail_json(msg=f"task declares secrets.{missing[0]} without a value: pass it in the module's "
                             f"secrets option (from Vault or the environment); missing: {', '.join(missing)}")
    try:
        return sky.Task.from_yaml_config(copy.deepcopy(spec), secrets_overrides=sorted(secrets.items()) or None)
    except Exception as exc:  # SkyPilot raises ValueError, jsonschema and its own errors alike
        module.fail_json(msg=f"SkyPilot rejected the task: {exc}")


def known_accelerators():
    """{lower-case name: name} of the accelerators the installed SkyPilot knows without a network:
    its common GPUs and TPUs, and those of every cloud catalogue it has downloaded (sky show-gpus
    and launches fetch them into ~/.sky/catalogs)."""
    catalog = importlib.import_module("sky.catalog")
    common = importlib.import_module("sky.catalog.common")
    names = list(catalog.get_common_gpus()) + list(catalog.get_tpus())
    for path in glob.glob(common.get_catalog_path(os.path.join("*", "vms.csv"))):
        with open(path, encoding="utf-8", newline="") as handle:
            names += [row.get("AcceleratorName") or "" for row in csv.DictReader(handle)]
    return {n.lower(): n for n in names if n}


def check_accelerators(task):
    """Each resource's accelerator is one SkyPilot knows (a misspelt GPU would wait in the jobs
    controller's queue for capacity that never comes)."""
    known = known_accelerators()
    for resources in task.resources:
        for accelerator in (resources.accelerators or {}):
            if accelerator.lower() not in known:
                common = importlib.import_module("sky.catalog").get_common_gpus()
                raise ValueError(f"accelerator {accelerator!r} is unknown to SkyPilot's catalogue (common GPUs: "
                                 f"{', '.join(common)}; TPUs and the downloaded clouds' catalogues count too)")


def server_checks(task, request, name):
    """Run the checks SkyPilot's API server makes before it acts on `request` ('serve up',
    'serve update' or 'jobs launch'; sky/serve/server/impl.py and sky/jobs/server/core.py in
    0.14): the client-side loader accepts specs that these refuse (a spot/on-demand mix, a bad
    service name, resources with different recovery strategies). Raises what SkyPilot raises.
    SkyPilot's own code, imported from the installed package even when the SDK is a test's fake."""
    serve_utils = importlib.import_module("sky.serve.serve_utils")
    dag_utils = importlib.import_module("sky.utils.dag_utils")
    constants = importlib.import_module("sky.skylet.constants")
    # Task.validate() without Resources.validate(), which looks accelerators and regions up in
    # the clouds' catalogs that SkyPilot downloads: that one stays with the server, but for the
    # accelerators' names (check_accelerators).
    task.validate_name()
    task.validate_run()
    task.expand_and_validate_workdir()
    task.expand_and_validate_file_mounts()
    if request in ("serve up", "serve update"):
        serve_utils.validate_service_task(task, pool=False)
        if re.fullmatch(constants.CLUSTER_NAME_VALID_REGEX, name) is None:
            raise ValueError(f"Service name {name!r} is invalid: it must match {constants.CLUSTER_NAME_VALID_REGEX}")
    elif request == "jobs launch":
        check_accelerators(task)
        dag_utils.fill_default_config_in_dag_for_job_launch(dag_utils.convert_entrypoint_to_dag(task))
    else:
        raise ValueError(f"no server checks known for {request!r}")


def check_request(module, task, request, name):
    """server_checks() as a module failure, before any request and in check mode too."""
    try:
        server_checks(copy.deepcopy(task), request, name)
    except Exception as exc:  # SkyPilot raises ValueError, RuntimeError and its own errors alike
        module.fail_json(msg=f"SkyPilot's API server would refuse this {request}: {exc}")


def call(module, sky, what, function, *args, **kwargs):
    """Send one SDK request and wait for its result; an SDK error fails with SkyPilot's message."""
    try:
        return sky.get(function(*args, **kwargs))
    except Exception as exc:
        module.fail_json(msg=f"SkyPilot {what} failed: {type(exc).__name__}: {exc}")


def service(module, sky, name):
    """The SkyServe record of service `name`, or None."""
    records = call(module, sky, "serve status", sky.serve.status, [name])
    return next((r for r in records if field(r, "name") == name), None)


def report(record):
    """What sky_service and sky_service_info return of a service: endpoint, status and each
    replica's id, status, version, endpoint, infra and whether it is spot."""
    if record is None:
        return {"endpoint": None, "status": None, "replicas": []}
    keys = ("replica_id", "name", "status", "version", "endpoint", "infra", "is_spot")
    return {"endpoint": field(record, "endpoint"), "status": field(record, "status"),
            "replicas": [{k: field(r, k) for k in keys} for r in field(record, "replica_info") or []]}
