"""The test that a string can name a network interface, for every role that makes or reads one."""

from __future__ import annotations

from ansible_collections.wrinklefree.deployer.plugins.module_utils.mesh_entry import is_interface_name


def interface_name(value):
    """True when ``value`` is a string Linux and wg-quick take as an interface name."""
    return is_interface_name(value)


class TestModule:
    """Interface-name tests."""

    def tests(self):
        return {"interface_name": interface_name}
