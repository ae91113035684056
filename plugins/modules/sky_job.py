#!/usr/bin/python
"""Launch or cancel a SkyPilot managed job, idempotently by name."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sky_job
short_description: SkyPilot managed jobs, launched once per name
description:
  - C(state=present) launches a managed job from a task spec unless a job of that name is already
    pending or running, so a re-run never launches a duplicate. C(state=absent) cancels the
    active jobs of that name.
  - The spec is validated with SkyPilot's own loader (C(sky.Task.from_yaml_config)), then with the
    checks SkyPilot's API server runs on C(jobs launch) (the task's name, run command and mounts;
    one recovery strategy for all resources), before any request and in check mode too; a
    declared secret without a value fails first.
  - Talks to SkyPilot only through its Python SDK (C(sky.jobs.launch), C(sky.jobs.queue),
    C(sky.jobs.cancel), C(sky.get)), imported when the module runs.
version_added: "0.1.0"
options:
  name:
    description: Job name; the key for idempotence.
    type: str
    required: true
  task:
    description: The task spec (a rendered SkyPilot task YAML, as a mapping). Required for C(state=present).
    type: dict
  secrets:
    description: Values of the task's C(secrets) (for example C(WANDB_API_KEY)); never logged.
    type: dict
    default: {}
  state:
    description: Whether a job of this name should be active.
    type: str
    choices: [present, absent]
    default: present
  wait:
    description: After launching (or finding) the job, wait until it reaches O(wait_for).
    type: bool
    default: false
  wait_for:
    description: C(running), or C(finished) (a terminal status; anything but SUCCEEDED fails).
    type: str
    choices: [running, finished]
    default: running
  timeout:
    description: Seconds to wait at most.
    type: int
    default: 1800
  poll_interval:
    description: Seconds between status polls while waiting.
    type: int
    default: 15
attributes:
  check_mode:
    support: full
    description: The spec is validated and the queue read; no job is launched or cancelled.
  diff_mode:
    support: full
    description: A launch shows the task as YAML.
extends_documentation_fragment:
  - wrinklefree.deployer.sky
author: WrinkleFree-Deployer maintainers (@wrinklefree)
"""

EXAMPLES = r"""
- name: Launch stage 2 unless it is already running
  wrinklefree.deployer.sky_job:
    name: bitnet-2b-stage-continued-pretrain
    task: "{{ lookup('ansible.builtin.template', 'sky_tasks/train.yaml.j2') | from_yaml }}"
    secrets:
      WANDB_API_KEY: "{{ vault_wandb_api_key }}"

- name: Cancel it
  wrinklefree.deployer.sky_job:
    name: bitnet-2b-stage-continued-pretrain
    state: absent
"""

RETURN = r"""
job_ids:
  description: Ids of the job(s) of this name that were launched, found active, or cancelled.
  returned: always
  type: list
  elements: int
status:
  description: Status of the (first) job, e.g. PENDING, RUNNING, SUCCEEDED; null when none.
  returned: always
  type: str
launched:
  description: Whether this run launched a job.
  returned: always
  type: bool
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wrinklefree.deployer.plugins.module_utils.sky_sdk import (TERMINAL_JOB_STATUSES, call, check_request, field, import_sky,
                                                                                   load_task, spec_text)


def active_jobs(module, sky, name):
    records = call(module, sky, "jobs queue", sky.jobs.queue, refresh=False, skip_finished=True)
    return [r for r in records if field(r, "job_name") == name and field(r, "status") not in TERMINAL_JOB_STATUSES]


def wait(module, sky, job_ids):
    """Poll until the job is running (or finished, with wait_for=finished); return its status."""
    deadline = time.time() + module.params["timeout"]
    while True:
        records = call(module, sky, "jobs queue", sky.jobs.queue, refresh=True, job_ids=job_ids)
        status = field(records[0], "status") if records else None
        if status in TERMINAL_JOB_STATUSES:
            if status != "SUCCEEDED":
                module.fail_json(msg=f"job {job_ids} ended {status}: {field(records[0], 'failure_reason')}",
                                 job_ids=job_ids, status=status, changed=True)
            return status
        if status == "RUNNING" and module.params["wait_for"] == "running":
            return status
        if time.time() > deadline:
            module.fail_json(msg=f"job {job_ids} still {status} after {module.params['timeout']} s",
                             job_ids=job_ids, status=status)
        time.sleep(module.params["poll_interval"])


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "task": {"type": "dict"},
            "secrets": {"type": "dict", "default": {}, "no_log": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "wait": {"type": "bool", "default": False},
            "wait_for": {"type": "str", "choices": ["running", "finished"], "default": "running"},
            "timeout": {"type": "int", "default": 1800},
            "poll_interval": {"type": "int", "default": 15},
        },
        required_if=[("state", "present", ["task"])],
        supports_check_mode=True,
    )
    sky = import_sky(module)
    name = module.params["name"]
    if module.params["state"] == "present":
        task = load_task(module, sky, module.params["task"], module.params["secrets"])
        check_request(module, task, "jobs launch", name)
        active = active_jobs(module, sky, name)
        if active:
            job_ids = [field(r, "job_id") for r in active]
            status = wait(module, sky, job_ids) if module.params["wait"] and not module.check_mode else field(active[0], "status")
            module.exit_json(changed=False, launched=False, job_ids=job_ids, status=status)
        diff = {"before": "", "after": spec_text(module.params["task"])}
        if module.check_mode:
            module.exit_json(changed=True, launched=False, job_ids=[], status=None, diff=diff)
        job_ids = list(call(module, sky, "jobs launch", sky.jobs.launch, task, name=name)[0] or [])
        status = wait(module, sky, job_ids) if module.params["wait"] else "PENDING"
        module.exit_json(changed=True, launched=True, job_ids=job_ids, status=status, diff=diff)

    active = active_jobs(module, sky, name)
    job_ids = [field(r, "job_id") for r in active]
    if active and not module.check_mode:
        call(module, sky, "jobs cancel", sky.jobs.cancel, job_ids=job_ids)
    module.exit_json(changed=bool(active), launched=False, job_ids=job_ids, status="CANCELLED" if active else None)


if __name__ == "__main__":
    main()
