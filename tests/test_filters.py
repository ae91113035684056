"""Unit tests of the filter plugins."""

from __future__ import annotations

import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "filter"))

import pytest  # noqa: E402
from ansible.errors import AnsibleFilterError  # noqa: E402
from role_vars import unknown_role_vars  # noqa: E402
from wireguard import wireguard_addresses  # noqa: E402

KNOWN = ["base_ssh_port", "base_admin_user", "base_firewall_allow"]


def test_known_and_foreign_names_pass():
    assert unknown_role_vars(["base_ssh_port", "wireguard_port", "ansible_host"], "base_", KNOWN) == []


def test_typo_is_reported_with_suggestion():
    assert unknown_role_vars(["base_ssh_prot"], "base_", KNOWN) == [
        "unknown variable base_ssh_prot (did you mean base_ssh_port?)"
    ]


def test_unrelated_unknown_name_has_no_suggestion():
    assert unknown_role_vars(["base_colour"], "base_", KNOWN) == ["unknown variable base_colour"]


def test_internal_facts_are_ignored():
    assert unknown_role_vars(["base__in_container", "base__admin"], "base_", KNOWN) == []


def test_each_name_reported_once_in_order():
    names = ["base_zz", "base_aa", "base_zz"]
    assert unknown_role_vars(names, "base_", KNOWN) == ["unknown variable base_aa", "unknown variable base_zz"]


PLAN = [{"name": "base", "cidr": "10.100.0.0/29", "group": "base"},
        {"name": "other", "cidr": "10.100.1.0/24"}]
NET = "10.100.0.0/16"


def test_new_hosts_take_the_lowest_free_addresses_in_name_order():
    members = {"b": ["base"], "a": ["base"], "ctl": ["sky_controller"]}
    assert wireguard_addresses(members, PLAN, NET) == {"a": "10.100.0.1", "b": "10.100.0.2", "ctl": "10.100.1.1"}


def test_addresses_survive_adding_and_removing_hosts():
    first = wireguard_addresses({"b": ["base"], "c": ["base"]}, PLAN, NET)
    registry = {host: {"address": address} for host, address in first.items()}
    # "a" sorts first but joins later: it takes a free address, b and c keep theirs.
    grown = wireguard_addresses({"a": ["base"], "b": ["base"], "c": ["base"]}, PLAN, NET, registry)
    assert grown == {**first, "a": "10.100.0.3"}
    # b leaving changes nobody else's address.
    registry = {host: {"address": address} for host, address in grown.items()}
    assert wireguard_addresses({"a": ["base"], "c": ["base"]}, PLAN, NET, registry) == {"a": "10.100.0.3", "c": "10.100.0.2"}


def test_pinned_and_reserved_addresses():
    result = wireguard_addresses({"a": ["base"], "b": ["base"]}, PLAN, NET, pinned={"b": "10.100.0.1"},
                                 reserved={"laptop": "10.100.0.2"})
    assert result == {"a": "10.100.0.3", "b": "10.100.0.1"}


@pytest.mark.parametrize("kwargs,message", [
    ({"members": {f"h{i}": ["base"] for i in range(7)}},
     "range base (10.100.0.0/29) has no free address for h6: 6 addresses, all taken"),
    ({"pinned": {"a": "10.100.0.5", "b": "10.100.0.5"}}, "duplicate address 10.100.0.5 for a and b"),
    ({"reserved": {"laptop": "10.100.0.1"}, "pinned": {"a": "10.100.0.1"}},
     "duplicate address 10.100.0.1 for external peer laptop and a"),
    ({"registry": {"a": {"address": "10.100.1.9"}}}, "a is registered at 10.100.1.9, outside its range base"),
    ({"pinned": {"a": "10.200.0.1"}}, "wireguard_address of a: 10.200.0.1 is outside wireguard_network"),
    ({"reserved": {"laptop": "not-an-ip"}}, "wireguard_external_peers laptop: 'not-an-ip' is not an IP address"),
    ({"plan": [{"name": "x", "cidr": "10.200.0.0/24"}]}, "range x (10.200.0.0/24) is outside wireguard_network"),
    ({"plan": [{"name": "base", "cidr": "10.100.0.0/24", "group": "base"}], "members": {"c": ["burst"]}},
     "no range of wireguard_address_plan takes c"),
])
def test_bad_plans_fail_naming_the_cause(kwargs, message):
    args = {"members": {"a": ["base"], "b": ["base"]}, "plan": PLAN, "network": NET, **kwargs}
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        wireguard_addresses(**args)
