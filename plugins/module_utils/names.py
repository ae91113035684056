"""Names the roles make on a host: login names (the test login_name and the roles' input checks)."""

from __future__ import annotations

import re

# What useradd accepts by default on Debian (NAME_REGEX): lower case, digits, _ and -, not a
# leading digit or dash, at most 32 characters.
LOGIN_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def is_login_name(value) -> bool:
    """True when ``value`` is a string useradd takes as a login name."""
    return isinstance(value, str) and LOGIN_NAME.fullmatch(value) is not None
