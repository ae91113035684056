"""Checks of the runbooks' own parameters, made on the controller before any host is touched."""

from __future__ import annotations

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


class FilterModule:
    """Runbook parameter checks."""

    def filters(self):
        return {"runbook_host_problems": runbook_host_problems}
