"""A wrong value fails before any host is touched, with a message naming the variable.

The inventory's only host is a closed port on loopback: had validation let a value through,
the first task that needs the host would be unreachable, and the test would see it.
"""

from __future__ import annotations

import pytest

from helpers import output, playbook

CASES = {
    "port-not-int": ({"base_ssh_port": "abc"}, "base_ssh_port"),
    "port-range": ({"base_ssh_port": 70000}, "base_ssh_port must be 1-65535"),
    "typo": ({"base_ssh_prot": 2222}, "unknown variable base_ssh_prot (did you mean base_ssh_port?)"),
    "unknown-proto": (
        {"base_firewall_allow": [{"name": "x", "port": 1, "proto": "sctp"}]},
        "value of proto must be one of: tcp, udp, got: sctp found in base_firewall_allow",
    ),
    "rule-port": ({"base_firewall_allow": [{"name": "web", "port": 0}]}, "base_firewall_allow[0] (web)"),
    "rule-source": (
        {"base_firewall_allow": [{"name": "web", "port": 80, "sources": ["10.0.0.0/33"]}]},
        "not valid: ['10.0.0.0/33']",
    ),
    "bad-key": ({"base_admin_ssh_public_keys": ["not a key"]}, "base_admin_ssh_public_keys must hold"),
    "root-lockout": ({"base_ssh_permit_root_login": "no"}, "base_ssh_permit_root_login is \"no\""),
    "root-login-choice": ({"base_ssh_permit_root_login": "yes"}, "base_ssh_permit_root_login"),
}

GOOD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMr0nJ2wX3m1o8m3x0u5l2b1Gm2eYx0aQkS3c1v0xw8W test"


@pytest.fixture(scope="module")
def closed_host(tmp_path_factory):
    inventory = tmp_path_factory.mktemp("closed") / "hosts.yml"
    inventory.write_text(
        "all:\n  children:\n    base:\n      hosts:\n"
        "        closed:\n          ansible_host: 127.0.0.1\n          ansible_port: 1\n"
        "          ansible_user: root\n"
    )
    return inventory


@pytest.mark.parametrize("name", CASES)
def test_bad_value_fails_before_any_host_change(closed_host, name):
    extravars, message = CASES[name]
    runner = playbook("playbooks/site.yml", closed_host,
                      extravars={"base_admin_ssh_public_keys": [GOOD_KEY], **extravars})
    text = output(runner)
    assert runner.rc != 0
    assert runner.stats["failures"] == {"closed": 1}, text[-3000:]
    assert runner.stats["dark"] == {}, "a host was contacted before validation failed"
    assert message in " ".join(text.split()), text[-3000:]


def test_good_values_reach_the_host(closed_host):
    """The control case: valid input passes validation and only then meets the closed port."""
    runner = playbook("playbooks/site.yml", closed_host, extravars={"base_admin_ssh_public_keys": [GOOD_KEY]})
    assert runner.stats["dark"] == {"closed": 1}, output(runner)[-3000:]
