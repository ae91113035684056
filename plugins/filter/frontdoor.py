"""The front door's base servers, from the bitnet role's local facts, checked against what the
controller knows of each host."""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError


def _refused(host, what):
    return AnsibleFilterError(f"front door: the bitnet fact of {host} is refused, nothing of it reaches HAProxy: {what}")


def _server(host, fact, served, slots, bind):
    """One server from a host's report, each value in its strict form (a host's word never reaches
    the configuration as text it chose)."""
    address = fact["bind"]
    try:
        parsed = ipaddress.ip_address(address) if isinstance(address, str) else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise _refused(host, f"bind {address!r:.80} is not an IP address")
    if bind is not None and parsed != bind:
        raise _refused(host, f"bind {address} is not {bind}, where the controller knows its servers listen "
                             "(bitnet_server_bind, else its mesh address, else its private address)")
    try:
        port, parallel = int(served["port"]), int(slots or served.get("parallel") or 1)
    except (KeyError, TypeError, ValueError):
        raise _refused(host, f"port {served.get('port')!r:.40} and slots {served.get('parallel')!r:.40} must be numbers") from None
    if not 1 <= port <= 65535 or parallel < 1:
        raise _refused(host, f"port {port} must be 1-65535 and slots {parallel} at least 1")
    return {"name": host, "address": str(parsed), "port": port, "slots": parallel, "auth": fact.get("auth") is True}


def frontdoor_servers(facts, model, slots=None, binds=None):
    """One server per host whose bitnet fact runs ``model``: its listen address, port, slots
    (``slots`` when given, else the server's own ``parallel``) and whether it asks for an API
    key (``auth``), in host name order. ``binds`` maps a host to the address the controller knows
    its servers listen on; a fact that names another, or any value not in its strict form, is an
    error naming the host."""
    binds = binds or {}
    servers = []
    for host in sorted(facts):
        fact = facts[host] if isinstance(facts[host], dict) else {}
        served = [m for m in fact.get("models") or [] if isinstance(m, dict) and m.get("name") == model]
        if served and fact.get("bind"):
            known = binds.get(host)
            servers.append(_server(host, fact, served[0], slots, ipaddress.ip_address(known) if known else None))
    return servers


def frontdoor_server_binds(hostvars, hosts):
    """The address each of ``hosts`` has its model servers listen on, from the controller's own
    knowledge of it: ``bitnet_server_bind``, else its mesh address (``mesh_address``), else its
    Hetzner private address, as the bitnet role chooses it. Hosts without any are left out."""
    binds = {}
    for host in hosts:
        known = hostvars[host]
        address = known.get("bitnet_server_bind") or known.get("mesh_address") or known.get("hetzner_private_ipv4")
        if address:
            binds[host] = str(address)
    return binds


class FilterModule:
    """Front door helpers."""

    def filters(self):
        return {"frontdoor_servers": frontdoor_servers, "frontdoor_server_binds": frontdoor_server_binds}
