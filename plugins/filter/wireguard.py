"""WireGuard mesh addressing: stable addresses from a CIDR plan and a registry of past allocations."""

from __future__ import annotations

import ipaddress
import json

from ansible.errors import AnsibleFilterError

from ansible_collections.wrinklefree.deployer.plugins.module_utils.inputs import is_ip_network, is_plain_name, is_port, shared_values
from ansible_collections.wrinklefree.deployer.plugins.module_utils.mesh_entry import (entry_problems, is_endpoint,
                                                                                      is_interface_name, is_public_key)


def _registered(entry):
    """The address of a registry entry, which is a mapping with `address` or a bare address."""
    address = entry.get("address") if isinstance(entry, dict) else entry
    return str(address).split("/", maxsplit=1)[0] if address else None


def _parse(value, what):
    try:
        return ipaddress.ip_address(str(value).split("/", maxsplit=1)[0])
    except ValueError:
        raise AnsibleFilterError(f"{what}: {value!r} is not an IP address") from None


def wireguard_addresses(members, plan, network, registry=None, pinned=None, reserved=None, released=None):
    """Assign every mesh member one address, stable across runs.

    ``members`` maps host name to its inventory groups. ``plan`` is a list of ranges
    ``{name, cidr, group}``: a host takes an address in the first range whose group it is in
    (a range without group takes any host). An address comes from, in order: ``pinned`` (host
    variables), the ``registry`` (past allocations), or the lowest free address of the range,
    hosts taken in name order. So a host keeps its address when others are added or removed.
    ``reserved`` maps other users of the network (external peers) to their addresses.
    A registry entry of a host that is not a member now (off, migrating, left out of the
    inventory) keeps its address unless the host is in ``released`` (an explicit removal).

    Errors name the host and the cause: a collision, an address outside its range or the
    network, a host no range takes, an exhausted range.
    """
    registry, pinned, reserved, released = registry or {}, pinned or {}, reserved or {}, set(released or [])
    try:
        net = ipaddress.ip_network(network)
        ranges = [(r["name"], ipaddress.ip_network(r["cidr"]), r.get("group")) for r in plan]
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"wireguard address plan: {exc}") from None
    for name, cidr, _group in ranges:
        if not cidr.subnet_of(net):
            raise AnsibleFilterError(f"wireguard_address_plan range {name} ({cidr}) is outside wireguard_network {net}")

    def range_of(host):
        for name, cidr, group in ranges:
            if group is None or group in members[host]:
                return name, cidr
        raise AnsibleFilterError(f"wireguard: no range of wireguard_address_plan takes {host} "
                                 f"(its groups: {sorted(members[host])}); add a range for one of them")

    owner = {}  # address -> who holds it

    def take(address, who):
        if address in owner:
            raise AnsibleFilterError(f"wireguard: duplicate address {address} for {owner[address]} and {who}")
        owner[address] = who

    for name, value in sorted(reserved.items()):
        address = _parse(value, f"wireguard_external_peers {name}")
        if address not in net:
            raise AnsibleFilterError(f"wireguard_external_peers {name}: {address} is outside wireguard_network {net}")
        take(address, f"external peer {name}")

    for host, entry in sorted(registry.items()):
        if host not in members and host not in released and _registered(entry):
            take(_parse(_registered(entry), f"wireguard registry entry of {host}"),
                 f"{host} (registered, absent from this inventory; the remove-host runbook frees it)")

    assigned, pending = {}, []
    for host in sorted(members):
        range_name, cidr = range_of(host)
        if host in pinned:
            address = _parse(pinned[host], f"wireguard_address of {host}")
            if address not in net:
                raise AnsibleFilterError(f"wireguard_address of {host}: {address} is outside wireguard_network {net}")
        elif _registered(registry.get(host)):
            address = _parse(_registered(registry[host]), f"wireguard registry entry of {host}")
            if address not in cidr:
                raise AnsibleFilterError(
                    f"wireguard: {host} is registered at {address}, outside its range {range_name} ({cidr}); "
                    "remove its entry from the registry file to give it a new address")
        else:
            pending.append((host, range_name, cidr))
            continue
        take(address, host)
        assigned[host] = str(address)

    for host, range_name, cidr in pending:
        free = next((a for a in cidr.hosts() if a not in owner), None)
        if free is None:
            raise AnsibleFilterError(
                f"wireguard: range {range_name} ({cidr}) has no free address for {host}: "
                f"{sum(1 for _address in cidr.hosts())} addresses, all taken; widen it in wireguard_address_plan")
        take(free, host)
        assigned[host] = str(free)
    return assigned


def wireguard_registry(addresses, current, registry=None, released=None):
    """The new registry: each host of ``addresses`` with its address, and its public key,
    endpoint and interface from ``current`` (what the hosts of this run reported) or else from the old
    ``registry`` (a host unreachable now keeps its place in the mesh). A host with no public
    key in either has not joined yet and is left out. An old entry of a host absent from
    ``addresses`` stays as it was, unless the host is in ``released``. A report or an entry
    not in its strict form (module_utils mesh_entry: no newline, no wg-quick directive) is an
    error naming the host and the field: nothing a host says reaches another host unchecked."""
    registry, released = registry or {}, set(released or [])
    for host, report in sorted((current or {}).items()):
        # An empty value is no report (a new host in check mode has no key yet).
        problems = entry_problems({field: value for field, value in (report or {}).items() if value not in (None, "")})
        if problems:
            raise AnsibleFilterError(f"wireguard: the report of {host} is refused, nothing of it is recorded or "
                                     f"given to another host: {'; '.join(problems)}")
    result = {host: entry for host, entry in registry.items()
              if host not in addresses and host not in released and isinstance(entry, dict) and entry.get("public_key")}
    for host, address in sorted(addresses.items()):
        old = registry.get(host) if isinstance(registry.get(host), dict) else {}
        now = current.get(host) or {}
        public_key = now.get("public_key") or old.get("public_key")
        if public_key:
            result[host] = {"address": address, "public_key": public_key,
                            "endpoint": now.get("endpoint") or old.get("endpoint")}
            interface = now.get("interface") or old.get("interface")
            if interface:
                result[host]["interface"] = interface
    for host, entry in sorted(result.items()):
        problems = entry_problems(entry)
        if problems:
            raise AnsibleFilterError(f"wireguard: the registry entry of {host} is refused: {'; '.join(problems)}")
    return result


def _networks(protected):
    """(name, network) of each value of ``protected`` that is an address or a CIDR."""
    guarded = []
    for name, value in (protected or {}).items():
        try:
            guarded.append((name, ipaddress.ip_network(str(value), strict=False)))
        except ValueError:
            continue  # a host name, not an address: nothing to compare here
    return guarded


def wireguard_network_conflicts(network, protected):
    """What ``wireguard_network`` would take over: its addresses sit on the mesh interface, whose
    connected route would carry traffic for any of the ``protected`` networks it overlaps (the
    address Ansible reaches a host at, the hosts' own networks, loopback, link-local).
    Returns one message per overlap; empty when none."""
    mesh = ipaddress.ip_network(str(network), strict=False)
    return [f"wireguard_network {mesh} overlaps {name} ({other}): the mesh would take its traffic; "
            "choose a range none of the hosts' networks uses"
            for name, other in _networks(protected) if other.version == mesh.version and mesh.overlaps(other)]


def wireguard_route_conflicts(peers, protected):
    """What is wrong with the external peers' ``allowed_ips`` as routes: wg-quick would route
    each range to its peer, so a default route, a range over one of the ``protected`` networks
    (name -> CIDR or address: the mesh, the hosts' own addresses and networks, loopback,
    link-local) or over another peer's ranges would reroute traffic the hosts depend on.
    Returns one message per conflict, naming the peer by its index and name; empty when none."""
    problems, claimed = [], []
    guarded = _networks(protected)
    for index, peer in enumerate(peers or []):
        label = f"wireguard_external_peers[{index}] ({peer.get('name')})"
        mine = [(f"its address {peer.get('address')}", ipaddress.ip_network(f"{peer.get('address')}/32", strict=False))]
        for value in peer.get("allowed_ips") or []:
            try:
                net = ipaddress.ip_network(str(value), strict=False)
            except ValueError:
                problems.append(f"{label}: allowed_ips entry {value!r} is not a CIDR")
                continue
            if net.prefixlen == 0:
                problems.append(f"{label}: allowed_ips {net} is a default route: it would send every host's "
                                "traffic to this peer; list the peer's own networks only")
                continue
            for name, other in guarded:
                if other.version == net.version and net.overlaps(other):
                    problems.append(f"{label}: allowed_ips {net} overlaps {name} ({other})")
            for owner, what, other in claimed:
                if other.version == net.version and net.overlaps(other):
                    problems.append(f"{label}: allowed_ips {net} overlaps {what} of {owner} ({other})")
            mine.append((f"allowed_ips {net}", net))
        claimed.extend((label, what, net) for what, net in mine)
    return problems


def _shown(value):
    return json.dumps(value, default=str)


def _peer_problems(index, peer):
    if not isinstance(peer, dict):
        return [f"wireguard_external_peers[{index}] must be a mapping, got {_shown(peer)}"]
    problems = []
    if not is_plain_name(peer.get("name")):
        problems.append("name must be letters, digits and _.-")
    if not is_public_key(peer.get("public_key")):
        problems.append(f"public_key must be a WireGuard key (44 characters of base64 ending in '='), got {_shown(peer.get('public_key'))}")
    try:
        ipaddress.IPv4Address(peer.get("address"))
    except ValueError:
        problems.append(f"address must be an IPv4 address (no prefix: its /32 is the peer's), got {_shown(peer.get('address'))}")
    if "endpoint" in peer and not is_endpoint(peer["endpoint"]):
        problems.append(f"endpoint must be HOST:PORT or [IPv6]:PORT, got {_shown(peer['endpoint'])}")
    bad = [network for network in peer.get("allowed_ips") or [] if not is_ip_network(network)]
    if bad:
        problems.append(f"allowed_ips must be addresses or CIDRs, not valid: {_shown(bad)}")
    return [f"wireguard_external_peers[{index}] ({peer.get('name')}): {problem}" for problem in problems]


def wireguard_input_problems(inputs):
    """What is wrong with the wireguard role's own inputs (``inputs``: ``wireguard_port``,
    ``wireguard_interface``, ``wireguard_network``, ``wireguard_external_peers``), one message each
    naming the variable, all at once. What they would route over is wireguard_route_conflicts's
    and wireguard_network_conflicts's to say."""
    problems = []
    if not is_port(inputs["wireguard_port"]):
        problems.append(f"wireguard_port must be 1-65535, got {inputs['wireguard_port']}")
    if not is_interface_name(inputs["wireguard_interface"]):
        problems.append("wireguard_interface must be 1-15 letters, digits and _=+.- (a Linux interface name), "
                        f"got {_shown(inputs['wireguard_interface'])}")
    network = inputs["wireguard_network"]
    try:
        network_ok = "/" in str(network) and ipaddress.IPv4Network(network).prefixlen < 32
    except ValueError:
        network_ok = False
    if not network_ok:
        problems.append(f"wireguard_network must be an IPv4 network in CIDR form (e.g. 10.100.0.0/16), got {network}")
    peers = inputs["wireguard_external_peers"] or []
    for index, peer in enumerate(peers):
        problems += _peer_problems(index, peer)
    for field, what in (("name", "name"), ("public_key", "public key")):
        if shared := shared_values(peers, field):
            problems.append(f"wireguard_external_peers: two peers share the {what} {', '.join(shared)}")
    return problems


class FilterModule:
    """WireGuard mesh helpers."""

    def filters(self):
        return {"wireguard_addresses": wireguard_addresses, "wireguard_registry": wireguard_registry,
                "wireguard_route_conflicts": wireguard_route_conflicts,
                "wireguard_network_conflicts": wireguard_network_conflicts,
                "wireguard_input_problems": wireguard_input_problems}
