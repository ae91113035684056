"""The provision role's plan: which servers the declaration wants, and which deletions it refuses."""

from __future__ import annotations

import re


def _layer_of(server) -> str:
    """The server's layer label; "" when it has none."""
    return (server.get("labels") or {}).get("layer") or ""


def provision_wanted(layers, project, servers, fleet_hosts=(), spread_max=10):
    """The servers the declaration ``layers`` wants in ``project``, named PROJECT-LAYER-N.

    Per layer: the ``count`` lowest N that the project's servers (``servers``: the Cloud's server
    list, the project's own by their label managed-by) already have, then the lowest free N,
    skipping a name the inventory (``fleet_hosts``) gives a host that is no Cloud server (a
    dedicated server). Server N is in the layer's ((N - 1) mod len)th location and in spread
    placement group PROJECT-LAYER-((N - 1) // spread_max + 1)."""
    managed = [s for s in servers if (s.get("labels") or {}).get("managed-by") == project]
    cloud_names = {s["name"] for s in servers}
    skipped = {s["name"] for s in managed} | {h for h in fleet_hosts if h not in cloud_names}
    wanted = []
    for layer in layers:
        prefix = f"{project}-{layer['name']}-"
        count = int(layer["count"])
        numbered = re.compile(re.escape(prefix) + r"([1-9][0-9]*)\Z")
        have = sorted(int(m.group(1)) for s in managed if _layer_of(s) == layer["name"]
                      for m in [numbered.match(s["name"])] if m)
        numbers = have[:count]
        n = 0
        while len(numbers) < count:
            n += 1
            if n not in numbers and f"{prefix}{n}" not in skipped:
                numbers.append(n)
        locations = layer["locations"]
        for n in sorted(numbers):
            wanted.append({
                "name": f"{prefix}{n}",
                "layer": layer["name"],
                "server_type": layer["server_type"],
                "image": layer.get("image", "debian-12"),
                "location": locations[(n - 1) % len(locations)],
                "placement_group": f"{prefix}{(n - 1) // int(spread_max) + 1}",
                "labels": {**(layer.get("labels") or {}), "managed-by": project, "layer": layer["name"]},
            })
    return wanted


def provision_too_many_deletions(leaving, managed, fraction):
    """The layers of which more than ``fraction`` of the servers they have (``managed``) would be
    deleted (``leaving``), each as 'LAYER (GONE of HAVE)', in the order the leaving servers name
    them. The managed servers without a layer label are a group of their own, under the same
    limit: a label missing is no way past it."""
    out = []
    for layer in dict.fromkeys(_layer_of(s) for s in leaving):
        gone = sum(1 for s in leaving if _layer_of(s) == layer)
        # A leaving server the managed list lacks still counts as one the layer has.
        have = max(sum(1 for s in managed if _layer_of(s) == layer), gone)
        if gone / have > float(fraction):
            out.append(f"{layer or 'servers without a layer label'} ({gone} of {have})")
    return out


class FilterModule:
    """Provision plan helpers."""

    def filters(self):
        return {"provision_wanted": provision_wanted, "provision_too_many_deletions": provision_too_many_deletions}
