"""The test that a host's report is a WireGuard public key and nothing else."""

from __future__ import annotations

from ansible_collections.wrinklefree.deployer.plugins.module_utils.mesh_entry import is_public_key


def wireguard_public_key(value):
    """True when ``value`` is 44 characters of base64, a Curve25519 key: no newline, no directive."""
    return is_public_key(value)


class TestModule:
    """WireGuard key tests."""

    def tests(self):
        return {"wireguard_public_key": wireguard_public_key}
