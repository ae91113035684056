"""The front door's base servers, from the bitnet role's local facts."""

from __future__ import annotations


def frontdoor_servers(facts, model, slots=None):
    """One server per host whose bitnet fact runs ``model``: its listen address, port, slots
    (``slots`` when given, else the server's own ``parallel``) and whether it asks for an API
    key (``auth``), in host name order."""
    servers = []
    for host in sorted(facts):
        served = [m for m in (facts[host] or {}).get("models", []) if m.get("name") == model]
        if served and facts[host].get("bind"):
            servers.append({"name": host, "address": facts[host]["bind"], "port": int(served[0]["port"]),
                            "slots": int(slots or served[0].get("parallel") or 1),
                            "auth": bool(facts[host].get("auth"))})
    return servers


class FilterModule:
    """Front door helpers."""

    def filters(self):
        return {"frontdoor_servers": frontdoor_servers}
