"""The test that a string can be a Linux login name, for every role that makes an account."""

from __future__ import annotations

import re

# What useradd accepts by default on Debian (NAME_REGEX): lower case, digits, _ and -, not a
# leading digit or dash, at most 32 characters.
LOGIN_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def login_name(value):
    """True when ``value`` is a string useradd takes as a login name."""
    return isinstance(value, str) and LOGIN_NAME.fullmatch(value) is not None


class TestModule:
    """Account-name tests."""

    def tests(self):
        return {"login_name": login_name}
