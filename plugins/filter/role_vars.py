"""Filters that find variables a role does not know, so a typo fails with a suggestion."""

from __future__ import annotations

import difflib


def unknown_role_vars(names, prefix, known):
    """Return one message per name that starts with ``prefix`` but is not in ``known``.

    Names with a double underscore after the prefix are the role's internal facts and
    are never reported.
    """
    known = set(known)
    messages = []
    for name in sorted(set(names)):
        if not name.startswith(prefix) or name.startswith(prefix + "_") or name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        messages.append(f"unknown variable {name}{hint}")
    return messages


class FilterModule:
    """Role-variable checks."""

    def filters(self):
        return {"unknown_role_vars": unknown_role_vars}
