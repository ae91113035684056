"""The strict form of what a WireGuard mesh member says about itself: its public key, endpoint,
address and interface. The registry is checked where it is written (the wireguard_registry
filter) and where it is read (the wireguard_mesh vars plugin), and a host's report where the
host gives it (the wireguard_public_key test), so no host's word reaches another host's
configuration unless it has this form: no newline, no wg-quick directive, nothing else."""

from __future__ import annotations

import ipaddress
import re

# A Curve25519 key in base64: 32 bytes are 43 characters and one "=", the last character holding
# 4 bits (one of 16).
PUBLIC_KEY = re.compile(r"[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=")
# What wg-quick accepts (its own check) and the kernel allows: 1 to 15 characters (IFNAMSIZ 16 with
# the NUL) of letters, digits and _=+.-.
INTERFACE_NAME = re.compile(r"[A-Za-z0-9_=+.-]{1,15}")
DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# host:port, [IPv6]:port.
ENDPOINT = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})")


def is_public_key(value) -> bool:
    return isinstance(value, str) and PUBLIC_KEY.fullmatch(value) is not None


def is_interface_name(value) -> bool:
    return isinstance(value, str) and INTERFACE_NAME.fullmatch(value) is not None and value not in (".", "..")


def _is_address(value) -> bool:
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        return False
    return True


def is_endpoint(value) -> bool:
    """HOST:PORT with an IPv4 address or a DNS name, or [IPv6]:PORT; the port 1-65535."""
    match = ENDPOINT.fullmatch(value) if isinstance(value, str) else None
    if not match or not 1 <= int(match["port"]) <= 65535:
        return False
    if match["v6"]:
        return _is_address(match["v6"]) and ":" in match["v6"]
    host = match["host"]
    return len(host) <= 253 and all(DNS_LABEL.fullmatch(label) for label in host.split("."))


def _shown(value) -> str:
    """A reported value as an error shows it: escaped (a newline stays visible) and cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def entry_problems(entry) -> list[str]:
    """What is wrong with a registry entry or a host's report (``address``, ``public_key``,
    ``endpoint``, ``interface``; each optional, ``endpoint`` may be empty): one message per field."""
    if not isinstance(entry, dict):
        return [f"{_shown(entry)} is not a mapping of address, public_key, endpoint and interface"]
    checks = {"address": (lambda v: isinstance(v, str) and _is_address(v), "an IP address"),
              "public_key": (is_public_key, "a WireGuard public key (44 characters of base64)"),
              "endpoint": (lambda v: v in (None, "") or is_endpoint(v), "HOST:PORT or [IPv6]:PORT"),
              "interface": (is_interface_name, "an interface name (1-15 letters, digits and _=+.-)")}
    unknown = sorted(set(entry) - set(checks))
    problems = [f"unknown field {', '.join(map(str, unknown))}"] if unknown else []
    return problems + [f"{field} {_shown(entry[field])} is not {what}"
                       for field, (valid, what) in checks.items() if field in entry and not valid(entry[field])]
