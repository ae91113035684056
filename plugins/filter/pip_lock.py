"""Filters that check a pip requirements file is a lock: every requirement pinned and hashed."""

from __future__ import annotations

import re

HASH = re.compile(r"\s--hash=(?:sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})(?=\s|$)")
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._, -]*\])?==[A-Za-z0-9.+!_-]+\s*(;.*)?$")


def pip_lock_problems(text):
    """Return one message per logical line of ``text`` that pip's ``--require-hashes`` mode
    would not cover by itself: a requirement not pinned with ``==`` or without a hash, and any
    option line (``-r``, ``-e``, ``--index-url``: options belong on pip's command line)."""
    problems = []
    logical, start = "", 0
    for number, line in enumerate(text.splitlines() + [""], 1):
        line = re.sub(r"(^|\s)#.*$", "", line)
        if not logical:
            start = number
        if line.endswith("\\"):
            logical += " " + line[:-1]
            continue
        logical = (logical + " " + line).strip()
        if logical:
            requirement = HASH.sub("", " " + logical).strip()
            if requirement.startswith("-"):
                problems.append(f"line {start}: option {requirement.split()[0]} (only pinned, hashed requirements)")
            elif not PINNED.match(requirement):
                problems.append(f"line {start}: {requirement} is not pinned with ==")
            elif not HASH.search(" " + logical):
                problems.append(f"line {start}: {requirement} has no --hash")
        logical = ""
    return problems


class FilterModule:
    """pip lock checks."""

    def filters(self):
        return {"pip_lock_problems": pip_lock_problems}
