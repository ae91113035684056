"""Checks of the runbooks' own parameters, made on the controller before any host is touched,
and the batch size of a rolling change."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.wrinklefree.deployer.plugins.module_utils.inputs import as_int

# Connections that reach another machine; "local" (and the implicit localhost) is this one.
_REMOTE = ("ssh", "paramiko", "paramiko_ssh", "smart", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh")


def runbook_host_problems(names, inventory_hosts, hostvars, parameter="host"):
    """One message per name in ``names`` (a list, or a comma-separated string) that is not a host
    the runbook may change: it must be one of ``inventory_hosts`` (groups['all'], which leaves
    out Ansible's implicit localhost) and be reached over SSH, never by a local connection."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",")]
    if not names or not all(names):
        return [f"give {parameter}=NAME[,NAME...], hosts of the inventory ({', '.join(inventory_hosts)})"]
    problems = []
    for name in names:
        if name not in inventory_hosts:
            problems.append(f"{parameter}: {name} is not a host of the inventory ({', '.join(inventory_hosts)})")
            continue
        connection = hostvars[name].get("ansible_connection", "ssh")
        if connection not in _REMOTE:
            problems.append(f"{parameter}: {name} is reached by connection {connection}, not SSH: "
                            "a runbook changes hosts of the fleet, never the machine it runs on")
    return problems


def rolling_serial(serving, batch, parameter="batch"):
    """The hosts a play changes at once (its ``serial``), given for each host of the play a value
    that is true when it serves already (``serving``) and the operator's ``batch``: every host
    when none serves yet (a first run has nothing to keep up), else ``batch``, which must leave at
    least one serving host out of each batch. Errors name ``parameter``."""
    size = as_int(batch)
    if size is None or size < 1:
        raise AnsibleFilterError(f"{parameter} must be a whole number of hosts, at least 1, got {batch!r}")
    serving = [bool(flag) for flag in serving]
    if not any(serving):
        return max(len(serving), 1)
    if size >= sum(serving) > 1:
        raise AnsibleFilterError(
            f"{parameter} {size} would change all {sum(serving)} serving hosts at once and take the layer down; "
            f"give at most {sum(serving) - 1}")
    return size


class FilterModule:
    """Runbook parameter checks and rolling batches."""

    def filters(self):
        return {"runbook_host_problems": runbook_host_problems, "rolling_serial": rolling_serial}
