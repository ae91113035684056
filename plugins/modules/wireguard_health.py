#!/usr/bin/python
"""Report the peers of a WireGuard interface and fail when a handshake is too old."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wireguard_health
short_description: Handshake age and traffic of every peer of a WireGuard interface
description:
  - Reads C(wg show <interface> dump) and reports, per peer, the age of the latest handshake
    and the bytes received and sent.
  - Fails when a peer's latest handshake is older than O(max_handshake_age) seconds, or when
    it never had one; with O(fail_on_stale=false) it only reports.
  - Never returns the interface's private key.
version_added: "0.1.0"
options:
  interface:
    description: The WireGuard interface.
    type: str
    default: wg0
  max_handshake_age:
    description:
      - Seconds after which a handshake counts as stale. WireGuard renews a session's handshake
        about every two minutes while traffic (or a persistent keepalive) flows.
    type: int
    default: 180
  names:
    description: Peer public key to a readable name, used in the report.
    type: dict
    default: {}
  check_peers:
    description:
      - Public keys of the peers to judge; the others are reported only. By default every peer.
      - Peers that are often offline (operator laptops) or were unreachable in this run belong out.
    type: list
    elements: str
  fail_on_stale:
    description: Fail when a peer is stale.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: It reads only; check mode runs it the same way.
  diff_mode:
    support: none
    description: It changes nothing, so there is nothing to show.
author: WrinkleFree-Deployer maintainers (@wrinklefree)
"""

EXAMPLES = r"""
- name: Every peer shook hands in the last 3 minutes
  wrinklefree.deployer.wireguard_health:
    interface: wg0
    names: "{{ wireguard__peer_names }}"
  register: mesh

- name: Report only
  wrinklefree.deployer.wireguard_health:
    max_handshake_age: 600
    fail_on_stale: false
"""

RETURN = r"""
public_key:
  description: The interface's public key.
  returned: success
  type: str
listen_port:
  description: The UDP port the interface listens on.
  returned: success
  type: int
peers:
  description: One entry per peer.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name from O(names), or the public key.
      type: str
    public_key:
      description: The peer's public key.
      type: str
    endpoint:
      description: The peer's current endpoint, or null.
      type: str
    allowed_ips:
      description: The peer's allowed IPs.
      type: list
    latest_handshake:
      description: Unix time of the latest handshake; 0 when there was none.
      type: int
    handshake_age:
      description: Seconds since the latest handshake; null when there was none.
      type: int
    rx_bytes:
      description: Bytes received from the peer.
      type: int
    tx_bytes:
      description: Bytes sent to the peer.
      type: int
    healthy:
      description: Whether the handshake is younger than O(max_handshake_age).
      type: bool
stale:
  description: Names of the judged peers whose handshake is missing or stale.
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.basic import AnsibleModule


def parse_dump(text, names, max_age, now):
    """The interface line and the peer lines of `wg show dump` as a report (no private key)."""
    lines = [line.split("\t") for line in text.splitlines() if line.strip()]
    if not lines or len(lines[0]) < 4:
        raise ValueError("unexpected output of wg show dump")
    public_key, listen_port = lines[0][1:3]
    peers = []
    for fields in lines[1:]:
        key, endpoint, allowed, handshake, rx, tx = fields[0], *fields[2:7]
        handshake = int(handshake)
        age = int(now - handshake) if handshake else None
        peers.append({
            "name": names.get(key, key),
            "public_key": key,
            "endpoint": None if endpoint == "(none)" else endpoint,
            "allowed_ips": [] if allowed == "(none)" else allowed.split(","),
            "latest_handshake": handshake,
            "handshake_age": age,
            "rx_bytes": int(rx),
            "tx_bytes": int(tx),
            "healthy": age is not None and age <= max_age,
        })
    return {"public_key": public_key, "listen_port": int(listen_port), "peers": peers}


def main():
    module = AnsibleModule(
        argument_spec={
            "interface": {"type": "str", "default": "wg0"},
            "max_handshake_age": {"type": "int", "default": 180},
            "names": {"type": "dict", "default": {}},
            "fail_on_stale": {"type": "bool", "default": True},
            "check_peers": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    wg = module.get_bin_path("wg", required=True)
    rc, out, err = module.run_command([wg, "show", module.params["interface"], "dump"])
    if rc != 0:
        module.fail_json(msg=f"wg show {module.params['interface']} failed: {err.strip()}", peers=[], stale=[])
    try:
        report = parse_dump(out, module.params["names"], module.params["max_handshake_age"], time.time())
    except ValueError as exc:
        module.fail_json(msg=str(exc), peers=[], stale=[])
    judged = module.params["check_peers"]
    stale_peers = [p for p in report["peers"] if not p["healthy"] and (judged is None or p["public_key"] in judged)]
    stale = [p["name"] for p in stale_peers]
    result = dict(report, changed=False, stale=stale)
    if stale and module.params["fail_on_stale"]:
        ages = ", ".join(
            f"{p['name']} ({'never' if p['handshake_age'] is None else str(p['handshake_age']) + ' s ago'})"
            for p in stale_peers)
        module.fail_json(msg=f"{len(stale)} WireGuard peer(s) without a handshake in the last "
                             f"{module.params['max_handshake_age']} s: {ages}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
