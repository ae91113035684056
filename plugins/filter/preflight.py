"""What preflight checks across a host's layers, which no role can check alone."""

from __future__ import annotations

# The TCP ports k3s opens on a node of the SkyPilot node pool (its API, the kubelet). VXLAN's
# 8472 is UDP, as WireGuard's port is: neither meets a TCP listener.
K3S_PORTS = (("k3s's API", 6443), ("k3s's kubelet", 10250))


def preflight_layer_problems(values, host, groups, defaults, pool_host=False):
    """One host's clashes between layers: two layers on one TCP port (an SSH port moved onto the
    front door's would lock everyone out), or the model servers' service user made of a login
    account. ``values`` are the variables of ``host``, ``groups`` its group names, ``defaults`` the
    layers' declared defaults (a variable the inventory leaves out takes it), ``pool_host``
    whether it is a node of the SkyPilot node pool (k3s's ports)."""
    def value(name):
        return values.get(name, defaults.get(name))

    ports = []
    if "base" in groups:
        ports.append(("base_ssh_port", value("base_ssh_port")))
    if "edge" in groups:
        ports += [("frontdoor_port", value("frontdoor_port")), ("the front door's statistics", value("frontdoor_stats_port"))]
    if "bitnet" in groups:
        ports += [(f"bitnet_models {model.get('name')}", model.get("port")) for model in values.get("bitnet_models") or []]
    if pool_host:
        ports += list(K3S_PORTS)
    problems = []
    numbers = [int(port) for _name, port in ports]
    if len(set(numbers)) != len(numbers):
        problems.append(f"{host}: {', '.join(f'{name} {port}' for name, port in ports)} "
                        "must be different TCP ports")
    if "bitnet" in groups:
        logins = list(dict.fromkeys(["root", value("base_admin_user"), values.get("ansible_user", "root")]))
        if value("bitnet_user") in logins:
            problems.append(f"bitnet_user ({value('bitnet_user')}) must not be root, base_admin_user or ansible_user "
                            f"({', '.join(logins)})")
    return problems


class FilterModule:
    """Preflight helpers."""

    def filters(self):
        return {"preflight_layer_problems": preflight_layer_problems}
