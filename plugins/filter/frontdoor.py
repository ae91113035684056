"""The front door's base servers, from the bitnet role's local facts, checked against what the
controller knows of each host."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

from ansible_collections.wrinklefree.deployer.plugins.module_utils.inputs import as_int, is_ip_network, is_port

# A client key, as HAProxy's key list holds it (one a line, compared whole).
_API_KEY = re.compile(r"[A-Za-z0-9._~+/=-]{16,}")


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


def _address(value):
    try:
        return ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _in_any(address, networks):
    return address is not None and any(address in ipaddress.ip_network(n) for n in networks)


def frontdoor_input_problems(inputs, private_networks):
    """What is wrong with the frontdoor role's inputs (``inputs``: the variables by name, with
    ``frontdoor_bind`` resolved to the address it stands for), one message each naming the
    variable; ``private_networks`` are the networks the role takes as private (no TLS or key
    needed there). Checks that need no facts, so preflight runs them on every edge host."""
    problems = []
    port, stats = inputs["frontdoor_port"], inputs["frontdoor_stats_port"]
    bind = inputs["frontdoor_bind"]
    if not is_port(port) or not is_port(stats) or as_int(port) == as_int(stats):
        problems.append(f"frontdoor_port and frontdoor_stats_port must be two ports 1-65535, got {port} and {stats}")
    address = _address(bind)
    if address is not None and address.is_unspecified:
        address = None
    if address is None:
        problems.append(f"frontdoor_bind must be one address of the host (not 0.0.0.0 or ::), got {json.dumps(bind, default=str)}")
    wrong = [value for value in inputs["frontdoor_allow_from"] or [] if not is_ip_network(value)]
    if wrong:
        problems.append(f"frontdoor_allow_from must be addresses or networks, not: {wrong}")
    keys = inputs["frontdoor_api_keys"] or []
    private = _in_any(address, private_networks)
    if address is not None and not private and not (inputs["frontdoor_tls_certificate"] and keys):
        problems.append(f"frontdoor_bind {bind} is a public address: set frontdoor_tls_certificate (a PEM file) and frontdoor_api_keys")
    if any(not isinstance(key, str) or not _API_KEY.fullmatch(key) for key in keys):
        problems.append("frontdoor_api_keys must be 16 or more characters of A-Z a-z 0-9 . _ ~ + / = - each")
    if as_int(inputs["frontdoor_rate_limit"]) is None or as_int(inputs["frontdoor_rate_limit"]) < 0:
        problems.append(f"frontdoor_rate_limit must be 0 (none) or more, got {inputs['frontdoor_rate_limit']}")
    for name in ("frontdoor_slots", "frontdoor_threshold"):
        if inputs[name] is not None and (as_int(inputs[name]) is None or as_int(inputs[name]) < 1):
            problems.append(f"{name} must be unset or at least 1, got {inputs[name]}")
    timeouts = inputs["frontdoor_queue_timeout"], inputs["frontdoor_server_timeout"]
    if any(as_int(t) is None or as_int(t) < 1 for t in timeouts):
        problems.append(f"frontdoor_queue_timeout and frontdoor_server_timeout must be at least 1 s, got {timeouts[0]} and {timeouts[1]}")
    if inputs["frontdoor_burst"]:
        problems += _burst_problems(inputs["frontdoor_burst_endpoint"], inputs["frontdoor_burst_api_key"], private_networks)
    files = [inputs["frontdoor_tls_certificate"], inputs["frontdoor_burst_ca_file"] if inputs["frontdoor_burst"] else ""]
    problems += [f"{path} does not exist on the controller" for path in files if path and not os.path.isfile(path)]
    return problems


def _burst_problems(endpoint, key, private_networks):
    if not key:
        return ["frontdoor_burst_api_key is empty: the burst replicas ask every request for their key (the serve role's API key)"]
    parts = urlsplit(endpoint or "")
    try:
        port = parts.port
    except ValueError:
        port = None
    scheme_ok = parts.scheme == "https" or (parts.scheme == "http" and _in_any(_address(parts.hostname), private_networks))
    if parts.hostname and port and scheme_ok:
        return []
    public_http = " (a public endpoint needs TLS)" if parts.scheme == "http" and parts.hostname and port else ""
    return [f"frontdoor_burst_endpoint must be https://HOST:PORT, or http://ADDRESS:PORT on a private address, "
            f"got {json.dumps(endpoint, default=str)}{public_http}"]


class FilterModule:
    """Front door helpers."""

    def filters(self):
        return {"frontdoor_input_problems": frontdoor_input_problems, "frontdoor_servers": frontdoor_servers,
                "frontdoor_server_binds": frontdoor_server_binds}
