"""The test that a string can be a Linux login name, for every role that makes an account."""

from __future__ import annotations

from ansible_collections.wrinklefree.deployer.plugins.module_utils.inputs import is_login_name


def login_name(value):
    """True when ``value`` is a string useradd takes as a login name."""
    return is_login_name(value)


class TestModule:
    """Account-name tests."""

    def tests(self):
        return {"login_name": login_name}
