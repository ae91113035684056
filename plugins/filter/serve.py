"""What the burst layer (role serve) takes from the base layer, and the releases it ships."""

from __future__ import annotations

import json


def serve_base_layer(base_facts, model=""):
    """From the base hosts' ``bitnet`` local facts: ``releases`` (one per release, in the facts'
    order), ``model`` (the one named ``model``, else the first a host serves; {} when none) and
    ``problems``, the first reason the replicas could not serve it (empty when they can)."""
    releases, seen = [], set()
    for fact in base_facts or []:
        if "release" in fact and fact["release"] not in seen:
            seen.add(fact["release"])
            releases.append(fact)
    served = [m for fact in base_facts or [] for m in fact.get("models") or []]
    name = model or (served[0].get("name", "") if served else "")
    chosen = next((m for m in served if m.get("name") == name), {})
    systems = list(dict.fromkeys(r.get("os") for r in releases))
    if not releases:
        problem = "no base host records a BitNet release: run playbooks/bitnet.yml on group bitnet first"
    elif not chosen:
        names = ", ".join(dict.fromkeys(m.get("name", "") for m in served))
        problem = f"serve_model {json.dumps(model)} is not served by the base layer (it serves: {names})"
    elif len(systems) > 1:
        problem = (f"the base layer's releases were built on {' and '.join(map(str, systems))}: a replica runs one "
                   "distribution (serve_image_id)")
    elif "url" not in chosen or "sha256" not in chosen:
        problem = f"model {name} needs a url and a sha256 in bitnet_models: burst replicas fetch it and check it"
    else:
        problem = None
    return {"releases": releases, "model": chosen, "problems": [problem] if problem else []}


def serve_shipped_releases(stat_results):
    """The releases a replica chooses from, from the results of a ``stat`` (with a sha256
    checksum) looped over the base layer's releases: ``[{key, sha256, arch, cpu_flags, rank}]``,
    the one that needs the most CPU flags first (a replica takes the first its CPU can run)."""
    shipped = []
    for result in stat_results:
        release = result["item"]
        shipped.append({**{k: release[k] for k in ("arch", "cpu_flags") if k in release},
                        "key": release["release"], "sha256": result["stat"]["checksum"],
                        "rank": len(release.get("cpu_flags") or [])})
    return sorted(shipped, key=lambda r: r["rank"], reverse=True)


class FilterModule:
    """Burst layer helpers."""

    def filters(self):
        return {"serve_base_layer": serve_base_layer, "serve_shipped_releases": serve_shipped_releases}
