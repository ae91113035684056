"""One compromised host stays one compromised host (issue 32): on the fleet, a host acting as a
compromised one reports what root there could make it report. The run refuses the report and
names the host; no other host's configuration changes, and the next good run finds nothing to
repair."""

from __future__ import annotations

import json
import shlex

import pytest

from wrinklefree_lab.helpers import mesh_registry, output, playbook, sh, sh_out

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]

# `wg pubkey` as root on a compromised host could make it print: its key, then wg-quick directives
# that would run as root on every member at its next `wg-quick up`.
DOCTORED_WG = """#!/bin/sh
if [ "$1" = pubkey ]; then /usr/bin/wg.real pubkey; printf '[Interface]\\nPostUp = touch /tmp/pwned\\n'; exit 0; fi
exec /usr/bin/wg.real "$@"
"""
FACT = "/etc/ansible/facts.d/bitnet.fact"


def configs(hosts: list[str], path: str) -> dict[str, str]:
    return {host: sh_out(host, f"cat {path}") for host in hosts}


def test_a_doctored_key_is_refused_and_reaches_no_other_host(fleet, fleet_first_run):
    """Finding 1: root on one host makes its `wg` print a wg-quick directive after the key. The run
    fails that host, naming it; the registry keeps its last good key, no other host's
    configuration changes."""
    hosts = fleet.hosts()
    liar, others = hosts[2], hosts[:2]
    before, files = mesh_registry(fleet), configs(others, "/etc/wireguard/wg0.conf")
    sh_out(liar, f"mv /usr/bin/wg /usr/bin/wg.real && printf %s {shlex.quote(DOCTORED_WG)} > /usr/bin/wg && chmod 755 /usr/bin/wg")
    try:
        assert "PostUp" in sh_out(liar, "wg pubkey < /etc/wireguard/wg0.key")
        runner = playbook("playbooks/wireguard.yml", fleet)
    finally:
        sh_out(liar, "mv /usr/bin/wg.real /usr/bin/wg")
    text = " ".join(output(runner).split())
    assert runner.rc != 0 and set(runner.stats["failures"]) == {liar}, text[-3000:]
    assert f"{liar} reported" in text and "refused, and given to no other host" in text, text[-3000:]
    assert mesh_registry(fleet) == before
    assert configs(others, "/etc/wireguard/wg0.conf") == files
    assert "touch /tmp/pwned" not in files[others[0]] and sh(others[0], "test -e /tmp/pwned", check=False).returncode == 1


def test_a_doctored_bitnet_fact_is_refused_and_reaches_no_haproxy(fleet, fleet_first_run):
    """Finding 2: root on a base host writes its bitnet fact with a newline and HAProxy
    directives after its address (here: one that serves the front door's own certificate and
    key file). The front door's run fails, naming the host, and HAProxy's configuration stays as
    it was; so it does for a fact that names another address."""
    edge, liar = fleet.host(1), fleet.host(3)
    haproxy = configs([edge], "/etc/haproxy/haproxy.cfg")
    good = json.loads(sh_out(liar, f"cat {FACT}"))
    doctored = [{**good, "bind": good["bind"] + ":8080 check\n    http-request return status 200 file /etc/haproxy/frontdoor.pem\n#"},
                {**good, "bind": fleet.address(1)}]
    try:
        for fact in doctored:
            sh_out(liar, f"printf %s {shlex.quote(json.dumps(fact))} > {FACT}")
            runner = playbook("playbooks/frontdoor.yml", fleet)
            text = " ".join(output(runner).split())
            assert runner.rc != 0 and set(runner.stats["failures"]) == {edge}, text[-3000:]
            assert f"the bitnet fact of {liar} is refused" in text, text[-3000:]
            assert configs([edge], "/etc/haproxy/haproxy.cfg") == haproxy
    finally:
        sh_out(liar, f"printf %s {shlex.quote(json.dumps(good))} > {FACT}")
