#!/usr/bin/python
"""Bring a SkyServe service up, update it when its spec changes, or take it down."""

from __future__ import annotations

DOCUMENTATION = r"""
module: sky_service
short_description: SkyServe services, updated only when their spec changes
description:
  - C(state=present) runs C(serve up) when the service does not exist, C(serve update) (rolling by
    default, blue-green on request) when the desired spec differs from the one last applied, and
    nothing when they are equal. C(state=absent) takes the service down.
  - SkyServe does not return a service's spec, so the module keeps the spec it applied in
    O(state_dir) on the host that runs it, in files only their owner may read. A service changed
    by other means is not noticed until its spec here changes.
  - Of the secret values it keeps only an HMAC, keyed with a random key of O(state_dir)
    (C(.fingerprint-key)), never the values or a plain hash of them, which would let anyone who
    reads the record test guesses of a key offline.
  - The spec is validated with SkyPilot's own loader, then with the checks SkyPilot's API server
    runs on C(serve up) and C(serve update) (its C(validate_service_task), which refuses spot and
    on-demand resources mixed other than through C(dynamic_ondemand_fallback) or
    C(base_ondemand_fallback_replicas), and the service name's pattern), before any request and in
    check mode too.
  - Talks to SkyPilot only through its Python SDK (C(sky.serve.up), C(update), C(down),
    C(status), C(sky.get)), imported when the module runs.
version_added: "0.1.0"
options:
  name:
    description: Service name.
    type: str
    required: true
  task:
    description: The service's task spec (a rendered SkyPilot YAML with a C(service) section). Required for C(state=present).
    type: dict
  secrets:
    description: Values of the task's C(secrets); never logged.
    type: dict
    default: {}
  state:
    description: Whether the service should exist.
    type: str
    choices: [present, absent]
    default: present
  mode:
    description: How C(serve update) replaces replicas.
    type: str
    choices: [rolling, blue_green]
    default: rolling
  state_dir:
    description: Where the module records the spec it applied to each service.
    type: path
    default: ~/.sky/wrinklefree-deployer/services
attributes:
  check_mode:
    support: full
    description: The spec is validated and the service read; no service is started, updated or taken down.
  diff_mode:
    support: full
    description: The service's spec before and after, as YAML.
extends_documentation_fragment:
  - wrinklefree.deployer.sky
author: WrinkleFree-Deployer maintainers (@wrinklefree)
"""

EXAMPLES = r"""
- name: The burst layer of BitNet on spot capacity
  wrinklefree.deployer.sky_service:
    name: bitnet
    task: "{{ lookup('ansible.builtin.template', 'sky_tasks/serve.yaml.j2') | from_yaml }}"

- name: Switch versions all at once
  wrinklefree.deployer.sky_service:
    name: bitnet
    task: "{{ spec }}"
    mode: blue_green

- name: Take it down
  wrinklefree.deployer.sky_service:
    name: bitnet
    state: absent
"""

RETURN = r"""
action:
  description: What was done, C(up), C(update), C(down) or C(none).
  returned: always
  type: str
endpoint:
  description: The service endpoint, once SkyServe reports one.
  returned: success
  type: str
status:
  description: The service status SkyServe reports.
  returned: success
  type: str
replicas:
  description: Replicas as SkyServe reports them (id, name, status, version, endpoint, infra, is_spot).
  returned: success
  type: list
  elements: dict
"""

import hashlib
import hmac
import json
import os
import secrets as secrets_module

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.wrinklefree.deployer.plugins.module_utils.sky_sdk import call, check_request, import_sky, load_task, report, service, spec_text


def _canonical(spec, secrets):
    return json.dumps([spec, sorted(secrets.items())], sort_keys=True).encode()


def fingerprint(key, spec, secrets):
    """What decides whether an update is due: the spec and the secret values, under an HMAC."""
    return hmac.new(key, _canonical(spec, secrets), hashlib.sha256).hexdigest()


def legacy_fingerprint(spec, secrets):
    """The plain sha256 that records of earlier versions hold: compared once, then replaced."""
    return hashlib.sha256(_canonical(spec, secrets)).hexdigest()


def write_private(path, data):
    """Write ``path`` (replacing it) readable by its owner only."""
    descriptor = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path + ".tmp", 0o600)
    os.replace(path + ".tmp", path)


def fingerprint_key(state_dir, create):
    """The state directory's HMAC key: made once (32 random bytes, 0600); None in check mode
    before it exists."""
    path = os.path.join(state_dir, ".fingerprint-key")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        if not create:
            return None
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    key = secrets_module.token_bytes(32)
    write_private(path, key)
    return key


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "task": {"type": "dict"},
            "secrets": {"type": "dict", "default": {}, "no_log": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "mode": {"type": "str", "choices": ["rolling", "blue_green"], "default": "rolling"},
            "state_dir": {"type": "path", "default": "~/.sky/wrinklefree-deployer/services"},
        },
        required_if=[("state", "present", ["task"])],
        supports_check_mode=True,
    )
    sky = import_sky(module)
    name, spec, secrets = module.params["name"], module.params["task"], module.params["secrets"]
    record_path = os.path.join(module.params["state_dir"], f"{name}.json")
    try:
        with open(record_path, encoding="utf-8") as handle:
            applied = json.load(handle)
    except FileNotFoundError:
        applied = {}

    if module.params["state"] == "absent":
        current = service(module, sky, name)
        if current is not None and not module.check_mode:
            call(module, sky, "serve down", sky.serve.down, [name])
            if os.path.exists(record_path):
                os.unlink(record_path)
        module.exit_json(changed=current is not None, action="down" if current is not None else "none",
                         **report(None))

    task = load_task(module, sky, spec, secrets)
    # serve up and serve update run the same checks on the server.
    check_request(module, task, "serve up", name)
    current = service(module, sky, name)
    key = fingerprint_key(module.params["state_dir"], create=not module.check_mode)
    # No key yet only in check mode, which records nothing.
    wanted = fingerprint(key, spec, secrets) if key is not None else None
    record = json.dumps({"spec": spec, "hmac": wanted}, sort_keys=True).encode()
    same = (wanted is not None and hmac.compare_digest(applied.get("hmac", ""), wanted)
            or applied.get("fingerprint") == legacy_fingerprint(spec, secrets))
    if current is not None and same:
        if "fingerprint" in applied and not module.check_mode:
            # An earlier version's record: the same spec, its plain hash replaced by the HMAC.
            write_private(record_path, record)
        module.exit_json(changed=False, action="none", **report(current))
    action = "up" if current is None else "update"
    diff = {"before": spec_text(applied.get("spec")) if current is not None and applied else "",
            "after": spec_text(spec)}
    if module.check_mode:
        module.exit_json(changed=True, action=action, diff=diff, **report(current))
    if action == "up":
        call(module, sky, "serve up", sky.serve.up, task, service_name=name)
    else:
        call(module, sky, "serve update", sky.serve.update, task, service_name=name,
             mode=sky.serve.UpdateMode(module.params["mode"]))
    write_private(record_path, record)
    module.exit_json(changed=True, action=action, diff=diff, **report(service(module, sky, name)))


if __name__ == "__main__":
    main()
