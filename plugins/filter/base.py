"""Checks of the base role's firewall rules that argument_specs cannot express."""

from __future__ import annotations

import ipaddress
import re

_NAME = re.compile(r"^[A-Za-z0-9 ._:/-]+$")


def _is_source(value) -> bool:
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return True


def base_rule_problems(rules, variable):
    """One message per rule of ``rules`` (base_firewall_allow, or a layer's hook rules) whose port,
    name or sources are wrong, naming ``variable``, the rule's index and name. One pass in Python:
    an assert looped over the rules costs a template round per rule and host."""
    problems = []
    for index, rule in enumerate(rules or []):
        name = rule.get("name", "")
        try:
            port_ok = 1 <= int(rule.get("port")) <= 65535
        except (TypeError, ValueError):
            port_ok = False
        bad_sources = [source for source in rule.get("sources") or [] if not _is_source(source)]
        if port_ok and not bad_sources and _NAME.match(str(name)):
            continue
        problems.append(
            f"{variable}[{index}] ({name}): port must be 1-65535 (got {rule.get('port')}), name only "
            "letters, digits, spaces and ._:/-, and sources valid IPv4/IPv6 addresses or CIDRs; "
            f"not valid: {bad_sources}")
    return problems


class FilterModule:
    """The base role's rule checks."""

    def filters(self):
        return {"base_rule_problems": base_rule_problems}
