"""Unit tests of the filter plugins."""

from __future__ import annotations

import sys

from helpers import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "filter"))

from role_vars import unknown_role_vars  # noqa: E402

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
