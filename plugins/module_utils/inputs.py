"""Forms of the roles' input values, for their checks (the input-problem filters, the test
login_name): login names, plain names, whole numbers, ports, IP networks, and the values that two
entries of a list share."""

from __future__ import annotations

import ipaddress
import re

# What useradd accepts by default on Debian (NAME_REGEX): lower case, digits, _ and -, not a
# leading digit or dash, at most 32 characters.
LOGIN_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def is_login_name(value) -> bool:
    """True when ``value`` is a string useradd takes as a login name."""
    return isinstance(value, str) and LOGIN_NAME.fullmatch(value) is not None


# A model's or an external peer's name: one word of letters, digits and _.-.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def is_plain_name(value) -> bool:
    return isinstance(value, str) and PLAIN_NAME.fullmatch(value) is not None


def as_int(value):
    """``value`` as a whole number (an int or its digits, as Jinja's ``int`` takes it), or None;
    a bool is not a number here."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def is_port(value) -> bool:
    """True when ``value`` is a TCP or UDP port, 1-65535."""
    number = as_int(value)
    return number is not None and 1 <= number <= 65535


def is_ip_network(value) -> bool:
    """True when ``value`` is an IPv4 or IPv6 address or CIDR (host bits allowed)."""
    try:
        ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        return False
    return True


def shared_values(entries, field):
    """The values of ``field`` that two or more of ``entries`` (mappings; others are skipped)
    have, as strings, sorted."""
    values = [str(entry.get(field)) for entry in entries if isinstance(entry, dict)]
    return sorted({value for value in values if values.count(value) > 1})
