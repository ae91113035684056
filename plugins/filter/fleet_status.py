"""The fleet status report of playbooks/runbooks/status.yml: per host and in total, with cost per token."""

from __future__ import annotations

import csv
import io
import statistics

from ansible.errors import AnsibleFilterError

HOURS_PER_MONTH = 730


def _price(product, prices):
    """Price per hour of a product: `hourly`, or `monthly` / 730 (how Hetzner lists dedicated servers)."""
    entry = prices.get(product) or prices.get(str(product).lower())
    if entry is None:
        return None
    if isinstance(entry, (int, float)):
        return float(entry)
    if "hourly" in entry:
        return float(entry["hourly"])
    if "monthly" in entry:
        return float(entry["monthly"]) / HOURS_PER_MONTH
    raise AnsibleFilterError(f"status_prices[{product!r}] needs hourly or monthly, got {entry!r}")


def _per_million(price, tokens_per_second, utilisation):
    if not price or not tokens_per_second:
        return None
    return float(f"{price / (tokens_per_second * 3600 * utilisation) * 1e6:.4g}")


def _split(frontdoor):
    """Requests the front doors sent to the base and burst backends (HAProxy's CSV statistics of
    each edge host: the BACKEND rows' stot), and the burst layer's share."""
    base = burst = 0
    for text in (frontdoor or {}).values():
        for row in csv.DictReader(io.StringIO((text or "").lstrip("# "))):
            if row.get("svname") == "BACKEND" and row.get("pxname") in ("base", "burst"):
                count = int(row.get("stot") or 0)
                base, burst = (base + count, burst) if row["pxname"] == "base" else (base, burst + count)
    return {"base": base, "burst": burst, "burst_share": round(burst / (base + burst), 4) if base + burst else 0.0}


def fleet_status(hosts, prices, pool=None, frontdoor=None, burst=None, burst_price=None):
    """Judge and total the per-host records the status runbook gathered.

    ``hosts`` maps host name to ``{reachable, product, price_hourly, mesh_address, bitnet, health, peers}``
    (``price_hourly``: the Cloud API's price, which wins over ``prices``):
    ``bitnet`` is the bitnet role's local fact (its ``models`` carry the measured ``tg``), ``health``
    the HTTP status of each model's /health in the same order, ``peers`` the wireguard_health
    module's peers ``{name, handshake_age, healthy}``; ``prices`` maps product to a price per hour (or ``{hourly}``/``{monthly}``);
    ``pool`` is the list of addresses in the SkyPilot node pool (None: no controller in the run).
    ``frontdoor`` maps each edge host to HAProxy's CSV statistics; ``burst`` is the burst service
    as sky_service_info returns it; ``burst_price`` a burst replica's price per hour. A burst
    replica is taken to decode as fast as the median healthy base host (same release and model,
    a CPU at least as large), which prices the burst layer's 1M tokens; the cost at the current
    split weighs base and burst by their share of the front door's requests.
    """
    rows, problems = [], []
    for name in sorted(hosts):
        record = hosts[name]
        row = {"host": name, "reachable": bool(record.get("reachable")), "product": record.get("product")}
        issues = [] if row["reachable"] else ["unreachable"]
        bitnet = record.get("bitnet") or {}
        row.update(profile=bitnet.get("profile"), commit=(bitnet.get("commit") or "")[:7] or None,
                   release=bitnet.get("release"))
        statuses = record.get("health") or []
        row["models"] = [{**model, "healthy": index < len(statuses) and statuses[index] == 200}
                         for index, model in enumerate(bitnet.get("models") or [])]
        issues += [f"llama-server {m['name']} unhealthy" for m in row["models"] if not m.get("healthy")]
        row["peers"] = record.get("peers") or []
        issues += [f"WireGuard peer {p['name']} stale" for p in row["peers"] if not p.get("healthy")]
        address = record.get("mesh_address")
        row["in_pool"] = None if pool is None else address in pool
        # The Cloud API's price for the server's location first; the table for Robot products.
        api_price = record.get("price_hourly")
        row["price_per_hour"] = float(api_price) if api_price is not None else \
            _price(row["product"], prices) if row["product"] else None
        row["price_source"] = "api" if api_price is not None else "table" if row["price_per_hour"] is not None else None
        rates = [m["tg"] for m in row["models"] if m.get("healthy") and m.get("tg")]
        row["decode_tps"] = max(rates) if rates else None
        row["cost_per_1m"] = _per_million(row["price_per_hour"], row["decode_tps"], 1.0)
        row["cost_per_1m_at_50"] = _per_million(row["price_per_hour"], row["decode_tps"], 0.5)
        row["healthy"] = not issues
        row["issues"] = issues
        problems += [f"{name}: {issue}" for issue in issues]
        rows.append(row)
    priced = [r for r in rows if r["price_per_hour"] is not None]
    price = round(sum(r["price_per_hour"] for r in priced), 4)
    tokens = round(sum(r["decode_tps"] or 0 for r in rows if r["healthy"]), 2)
    totals = {"hosts": len(rows), "healthy": sum(r["healthy"] for r in rows), "price_per_hour": price,
              "unpriced": [r["host"] for r in rows if r["price_per_hour"] is None],
              "decode_tps": tokens, "cost_per_1m": _per_million(price, tokens, 1.0),
              "cost_per_1m_at_50": _per_million(price, tokens, 0.5)}
    split = _split(frontdoor)
    rates = [r["decode_tps"] for r in rows if r["healthy"] and r["decode_tps"]]
    burst_cost = _per_million(burst_price, statistics.median(rates) if rates else None, 1.0)
    totals["cost_per_1m_base_only"] = totals["cost_per_1m"]
    totals["cost_per_1m_burst"] = burst_cost
    totals["cost_per_1m_at_split"] = (
        totals["cost_per_1m"] if not split["burst_share"] else
        None if burst_cost is None or totals["cost_per_1m"] is None else
        float(f"{(1 - split['burst_share']) * totals['cost_per_1m'] + split['burst_share'] * burst_cost:.4g}"))
    replicas = [{k: r.get(k) for k in ("replica_id", "infra", "is_spot", "status")} for r in (burst or {}).get("replicas") or []]
    return {"hosts": rows, "totals": totals, "healthy": not problems, "problems": problems,
            "split": split,
            "burst": None if burst is None else {"status": burst.get("status"), "endpoint": burst.get("endpoint"), "replicas": replicas},
            "table": _table(rows, totals) + _split_table(split, burst, replicas, totals)}


def _cell(value, form=None):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, form) if form else str(value)


def _table(rows, totals):
    header = ["host", "up", "profile", "commit", "models", "peers", "pool", "€/h", "tok/s", "€/1M", "€/1M@50%", "status"]
    lines = [header]
    for r in rows:
        models = ",".join(f"{m['name']}:{'ok' if m.get('healthy') else 'DOWN'}" for m in r["models"]) or "-"
        ages = [p.get("handshake_age") for p in r["peers"]]
        peers = (f"{sum(p.get('healthy', False) for p in r['peers'])}/{len(ages)} "
                 f"max {max((a for a in ages if a is not None), default='-')}s") if ages else "-"
        lines.append([r["host"], _cell(r["reachable"]), _cell(r["profile"]), _cell(r["commit"]), models, peers,
                      _cell(r["in_pool"]), _cell(r["price_per_hour"], ".4f"), _cell(r["decode_tps"], ".1f"),
                      _cell(r["cost_per_1m"], ".3g"), _cell(r["cost_per_1m_at_50"], ".3g"),
                      "ok" if r["healthy"] else "; ".join(r["issues"])])
    lines.append(["TOTAL", f"{totals['healthy']}/{totals['hosts']}", "", "", "", "", "",
                  _cell(totals["price_per_hour"], ".4f"), _cell(totals["decode_tps"], ".1f"),
                  _cell(totals["cost_per_1m"], ".3g"), _cell(totals["cost_per_1m_at_50"], ".3g"), ""])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def _split_table(split, burst, replicas, totals):
    lines = [f"front door: {split['base']} requests to the base layer, {split['burst']} to the burst layer "
             f"({split['burst_share']:.1%} burst); €/1M base only {_cell(totals['cost_per_1m_base_only'], '.3g')}, "
             f"burst {_cell(totals['cost_per_1m_burst'], '.3g')}, at this split {_cell(totals['cost_per_1m_at_split'], '.3g')}"]
    if burst is not None:
        lines.append(f"burst service: {_cell(burst.get('status'))} at {_cell(burst.get('endpoint'))}, {len(replicas)} replicas"
                     + "".join(f"\n  replica {r['replica_id']}: {_cell(r['infra'])} {'spot' if r['is_spot'] else 'on-demand'} "
                               f"{_cell(r['status'])}" for r in replicas))
    return "\n" + "\n".join(lines)


class FilterModule:
    """Fleet status report."""

    def filters(self):
        return {"fleet_status": fleet_status}
