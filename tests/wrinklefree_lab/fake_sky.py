"""A recording fake of SkyPilot's SDK boundary, for the sky_job and sky_service modules.

The modules import it instead of `sky` when WF_SKY_SDK=fake_sky. Task validation stays real
(`Task` is SkyPilot's own class); the requests that would reach a SkyPilot API server are faked,
and refused as that server refuses them (its checks, SkyPilot's own code, run on every task).
Each module run is a new process, so the fake keeps its jobs, services and the calls it received
in the JSON file named by FAKE_SKY_STATE. Its functions have the real SDK's signatures, which
tests/test_sky_modules.py checks against the installed SkyPilot.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import types
from pathlib import Path

import sky as _sky
from sky.jobs.client.sdk import AUTO_JOB_GROUP

# The API server's checks, as the modules run them (plugins/module_utils/sky_sdk.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "plugins" / "module_utils"))
from sky_sdk import server_checks  # noqa: E402

Task = _sky.Task
TERMINAL = {"SUCCEEDED", "CANCELLED", "FAILED"}


def _load() -> dict:
    try:
        with open(os.environ["FAKE_SKY_STATE"], encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return {"calls": [], "jobs": [], "services": {}, "results": {}, "fail": {}}


def _save(state: dict) -> None:
    with open(os.environ["FAKE_SKY_STATE"], "w", encoding="utf-8") as handle:
        json.dump(state, handle, default=str, indent=1)


def _request(call: str, result, task=None, task_name=None, **recorded) -> str:
    """Record the call; refuse it as SkyPilot's API server would (its own checks, run on `task`);
    fail it if the test asked for that; return a request id for get()."""
    state = _load()
    state["calls"].append({"call": call, **recorded})
    if task is not None:
        try:
            server_checks(copy.deepcopy(task), call.replace(".", " "), task_name)
        except Exception as exc:
            _save(state)
            raise _sky.exceptions.ClientError(f"server refused {call}: {exc}") from None
    if call in state["fail"]:
        _save(state)
        raise _sky.exceptions.ClientError(state["fail"][call])
    request_id = f"request-{len(state['calls'])}"
    state["results"][request_id] = result(state) if callable(result) else result
    _save(state)
    return request_id


def get(request_id):
    """The result of a request; JSON has no tuples, so those are stored as {"tuple": [...]}."""
    result = _load()["results"][request_id]
    return tuple(result["tuple"]) if isinstance(result, dict) and set(result) == {"tuple"} else result


def _spec(task) -> dict:
    """What the fake records of a task: its config as SkyPilot serialises it, secrets left out."""
    config = task.to_yaml_config()
    config.pop("secrets", None)
    return json.loads(json.dumps(config, default=str))


# -- sky.jobs ---------------------------------------------------------------------------------
def _launch(task, name=None, pool=None, num_jobs=None, job_group=AUTO_JOB_GROUP, _need_confirmation=False):
    def result(state):
        job_id = len(state["jobs"]) + 1
        state["jobs"].append({"job_id": job_id, "job_name": name, "status": "PENDING"})
        return {"tuple": [[job_id], None]}
    return _request("jobs.launch", result, task=task, task_name=name, name=name, spec=_spec(task))


def _queue(refresh, skip_finished=False, all_users=False, job_ids=None, version=1):
    def result(state):
        jobs = [j for j in state["jobs"] if not (skip_finished and j["status"] in TERMINAL)]
        return [j for j in jobs if job_ids is None or j["job_id"] in job_ids]
    return _request("jobs.queue", result, skip_finished=skip_finished, job_ids=job_ids)


def _cancel(name=None, job_ids=None, all=False, all_users=False, pool=None, graceful=False,  # noqa: A002 (SkyPilot's name)
            graceful_timeout=None, task=None):
    def result(state):
        for job in state["jobs"]:
            if job["job_id"] in (job_ids or []) or (name and job["job_name"] == name):
                job["status"] = "CANCELLED"
    return _request("jobs.cancel", result, name=name, job_ids=list(job_ids or []))


jobs = types.SimpleNamespace(launch=_launch, queue=_queue, cancel=_cancel)


# -- sky.serve --------------------------------------------------------------------------------
def _record(name: str, version: int) -> dict:
    return {"name": name, "status": "READY", "endpoint": f"198.51.100.7:{30000 + version}", "active_versions": [version],
            "replica_info": [{"replica_id": 1, "name": f"{name}-1", "status": "READY", "version": version,
                              "endpoint": "203.0.113.21:8080", "infra": "AWS (us-east-1)", "is_spot": True}]}


def _up(task, service_name, _need_confirmation=False):
    def result(state):
        state["services"][service_name] = _record(service_name, 1)
        return {"tuple": [service_name, state["services"][service_name]["endpoint"]]}
    return _request("serve.up", result, task=task, task_name=service_name, service_name=service_name, spec=_spec(task))


def _update(task, service_name, mode, _need_confirmation=False):
    def result(state):
        version = state["services"][service_name]["active_versions"][0] + 1
        state["services"][service_name] = _record(service_name, version)
    return _request("serve.update", result, task=task, task_name=service_name, service_name=service_name,
                    mode=str(getattr(mode, "value", mode)), spec=_spec(task))


def _down(service_names, all=False, purge=False):  # noqa: A002 (SkyPilot's name)
    def result(state):
        for name in [service_names] if isinstance(service_names, str) else service_names or []:
            state["services"].pop(name, None)
    return _request("serve.down", result, service_names=service_names)


def _status(service_names):
    def result(state):
        names = [service_names] if isinstance(service_names, str) else service_names
        return [s for n, s in state["services"].items() if names is None or n in names]
    return _request("serve.status", result, service_names=service_names)


serve = types.SimpleNamespace(up=_up, update=_update, down=_down, status=_status, UpdateMode=_sky.serve.UpdateMode)
