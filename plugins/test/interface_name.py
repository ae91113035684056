"""The test that a string can name a network interface, for every role that makes or reads one."""

from __future__ import annotations

import re

# What wg-quick accepts (its own check) and the kernel allows: 1 to 15 characters (IFNAMSIZ 16 with
# the NUL) of letters, digits and _=+.-; a longer name fails only once the interface is made.
INTERFACE_NAME = re.compile(r"[A-Za-z0-9_=+.-]{1,15}")


def interface_name(value):
    """True when ``value`` is a string Linux and wg-quick take as an interface name."""
    return isinstance(value, str) and INTERFACE_NAME.fullmatch(value) is not None and value not in (".", "..")


class TestModule:
    """Interface-name tests."""

    def tests(self):
        return {"interface_name": interface_name}
