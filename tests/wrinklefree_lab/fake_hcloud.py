"""The writable half of the fake Hetzner Cloud API: a project's SSH keys, networks, firewalls,
placement groups and servers, created and deleted as the documented API does it, with actions
that take time, and the API's validation and error codes. `fake_hetzner.FakeHetzner` serves it
over HTTP; this module holds the state and the rules, so a test can read them directly.

Errors are `CloudError(status, code, message, details)`, as the API's `{"error": {...}}` body:
`invalid_input` (400, with the fields), `uniqueness_error` (409), `resource_limit_exceeded`
(403), `protected` (403), `not_found` (404), `resource_in_use` (409), `server_not_stopped` (409).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from datetime import datetime, timezone

# Net monthly prices in EUR per location, as GET /server_types gives them (strings, 10 decimals).
PRICES = {"cx22": 3.79, "ccx33": 47.99, "cax31": 12.49}
VAT = 1.19
# Images per architecture: (name, os_flavor, os_version) -> id.
IMAGES = {("debian-12", "x86"): 114690387, ("debian-12", "arm"): 114690389,
          ("ubuntu-24.04", "x86"): 161547269, ("ubuntu-24.04", "arm"): 161547270}
HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Label keys: an optional DNS prefix and a name of up to 63 characters; values up to 63.
LABEL_KEY = re.compile(r"([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?")
SPREAD_MAX = 10


class CloudError(Exception):
    STATUS = {"invalid_input": 400, "not_found": 404, "uniqueness_error": 409, "resource_in_use": 409,
              "server_not_stopped": 409, "resource_limit_exceeded": 403, "protected": 403}

    def __init__(self, code: str, message: str, details: dict | None = None, status: int | None = None):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}
        self.status = status or self.STATUS[code]

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid(field: str, message: str) -> CloudError:
    return CloudError("invalid_input", f"invalid input in field '{field}'",
                      {"fields": [{"name": field, "messages": [message]}]})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _price(net: float) -> dict:
    return {"net": f"{net:.10f}", "gross": f"{net * VAT:.10f}"}


def prices(name: str, locations: list[str]) -> list[dict]:
    """A server type's `prices`: one entry per location (Helsinki a little cheaper, as Hetzner's is)."""
    return [{"location": loc, "price_hourly": _price(round(PRICES[name] * (0.95 if loc == "hel1" else 1) / 730, 4)),
             "price_monthly": _price(PRICES[name] * (0.95 if loc == "hel1" else 1)), "included_traffic": 21990232555520,
             "price_per_tb_traffic": _price(1.0)} for loc in locations]


def server_type(name: str, spec: tuple, index: int, locations: list[str]) -> dict:
    """One item of GET /server_types (and a server's `server_type`), with its prices."""
    cores, memory, disk, cpu_type, arch = spec
    return {"id": 100 + index, "name": name, "description": name.upper(), "cores": cores, "memory": memory,
            "disk": disk, "cpu_type": cpu_type, "architecture": arch, "storage_type": "local",
            "deprecated": False, "deprecation": None, "prices": prices(name, locations),
            # Where the type can be ordered (the API's field since 2025; ids count from 1 in order).
            "locations": [{"id": i + 1, "name": loc, "deprecation": None, "available": True, "recommended": True}
                          for i, loc in enumerate(locations)]}


def image(name: str, arch: str) -> dict:
    flavor, version = name.split("-", 1)
    return {"id": IMAGES[(name, arch)], "type": "system", "status": "available", "name": name,
            "description": f"{flavor.capitalize()} {version}", "os_flavor": flavor, "os_version": version,
            "architecture": arch, "labels": {}, "deprecated": None, "rapid_deploy": True,
            "protection": {"delete": False}, "created": "2023-06-13T06:00:02+00:00", "created_from": None,
            "bound_to": None, "disk_size": 5, "image_size": None, "deleted": None}


def check_labels(labels, field: str = "labels") -> dict:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise invalid(field, "must be an object")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
            raise invalid(field, f"label key {key!r} is invalid")
        if not isinstance(value, str) or not LABEL_VALUE.fullmatch(value):
            raise invalid(field, f"label value {value!r} of {key!r} is invalid")
    return labels


class CloudProject:
    """A Hetzner Cloud project's writable resources. `servers` is the list the read side serves.

    `on_create(server, user_data, public_keys)` runs when a server is created (in a thread; the
    create action finishes when it returns; an exception fails the action) and may return
    {"ipv4", "private_ip"} for the server; `on_delete(server)` runs when a server is deleted.
    `action_seconds` is the least time an action runs; `server_limit` the project's server quota."""

    def __init__(self, servers: list, locations: dict, server_types: dict, networks: list, *, server_limit: int = 25,
                 action_seconds: float = 0.3, on_create=None, on_delete=None):
        self.servers, self.locations, self.server_types, self.networks = servers, locations, server_types, networks
        self.server_limit, self.action_seconds = server_limit, action_seconds
        self.on_create, self.on_delete = on_create, on_delete
        self.ssh_keys: list[dict] = []
        self.firewalls: list[dict] = []
        self.placement_groups: list[dict] = []
        self.actions: dict[int, dict] = {}
        # Ids of the servers created through the API (the others were given to the project).
        self.created: set[int] = set()
        self.lock = threading.RLock()
        self._ids = iter(range(200000, 10**9))

    # -- lookups ------------------------------------------------------------------------------
    def collection(self, kind: str) -> list[dict]:
        return {"servers": self.servers, "ssh_keys": self.ssh_keys, "networks": self.networks,
                "firewalls": self.firewalls, "placement_groups": self.placement_groups}[kind]

    def find(self, kind: str, ref, field: str | None = None) -> dict:
        """A resource by id or name; a missing one is `not_found`, or `invalid_input` of `field`."""
        for item in self.collection(kind):
            if ref in (item["id"], item["name"]) or str(ref) == str(item["id"]):
                return item
        if field:
            raise invalid(field, f"{kind[:-1].replace('_', ' ')} {ref!r} not found")
        raise CloudError("not_found", f"{kind[:-1].replace('_', ' ')} with ID '{ref}' not found")

    def server_type_list(self) -> list[dict]:
        return [server_type(name, spec, i, list(self.locations)) for i, (name, spec) in enumerate(self.server_types.items())]

    def image_list(self) -> list[dict]:
        return [image(name, arch) for name, arch in IMAGES]

    # -- actions ------------------------------------------------------------------------------
    def _action(self, command: str, resources: list[tuple[int, str]], work=None) -> dict:
        action = {"id": next(self._ids), "command": command, "status": "running", "progress": 0, "started": _now(),
                  "finished": None, "resources": [{"id": i, "type": t} for i, t in resources], "error": None}
        due = time.monotonic() + self.action_seconds
        done = threading.Event()

        def run():
            try:
                if work:
                    work()
            except Exception as exc:  # noqa: BLE001 (any failure of the work fails the action, as the API reports it)
                action["error"] = {"code": "action_failed", "message": str(exc)}
            done.set()
        threading.Thread(target=run, daemon=True).start()
        self.actions[action["id"]] = {"action": action, "due": due, "done": done, "then": None}
        return action

    def action(self, action_id: int) -> dict:
        """GET /actions/{id}: running until its time has passed and its work is done."""
        with self.lock:
            entry = self.actions.get(action_id)
            if entry is None:
                raise CloudError("not_found", f"action with ID '{action_id}' not found")
            action = entry["action"]
            if action["status"] == "running" and time.monotonic() >= entry["due"] and entry["done"].is_set():
                action.update(status="error" if action["error"] else "success", progress=100, finished=_now())
                if entry["then"] and not action["error"]:
                    entry["then"]()
            elif action["status"] == "running":
                action["progress"] = 50
            return action

    # -- SSH keys, networks, firewalls, placement groups ---------------------------------------
    def _unique(self, kind: str, name) -> str:
        if not isinstance(name, str) or not name:
            raise invalid("name", "is required")
        if any(item["name"] == name for item in self.collection(kind)):
            raise CloudError("uniqueness_error", "name is already used", {"fields": [{"name": "name"}]})
        return name

    def create_ssh_key(self, body: dict) -> dict:
        with self.lock:
            name = self._unique("ssh_keys", body.get("name"))
            key = body.get("public_key")
            parts = key.split() if isinstance(key, str) else []
            try:
                blob = base64.b64decode(parts[1], validate=True) if len(parts) >= 2 else b""
            except ValueError:
                blob = b""
            if not blob or not parts[0].startswith(("ssh-", "ecdsa-")):
                raise invalid("public_key", "invalid public key")
            digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()  # the API's fingerprint is MD5
            fingerprint = ":".join(digest[i:i + 2] for i in range(0, 32, 2))
            if any(k["fingerprint"] == fingerprint for k in self.ssh_keys):
                raise CloudError("uniqueness_error", "SSH key with the same fingerprint already exists",
                                 {"fields": [{"name": "public_key"}]})
            item = {"id": next(self._ids), "name": name, "fingerprint": fingerprint, "public_key": key.strip(),
                    "labels": check_labels(body.get("labels")), "created": _now()}
            self.ssh_keys.append(item)
            return {"ssh_key": item}

    def create_network(self, body: dict) -> dict:
        with self.lock:
            name = self._unique("networks", body.get("name"))
            if not isinstance(body.get("ip_range"), str) or not re.fullmatch(r"10\.\d+\.\d+\.\d+/\d+", body["ip_range"]):
                raise invalid("ip_range", "must be a private IPv4 network (RFC 1918) such as 10.0.0.0/16")
            subnets = [self._subnet(subnet, "subnets") for subnet in body.get("subnets") or []]
            item = {"id": next(self._ids), "name": name, "ip_range": body["ip_range"], "subnets": subnets,
                    "routes": [], "servers": [], "load_balancers": [], "protection": {"delete": False},
                    "labels": check_labels(body.get("labels")), "expose_routes_to_vswitch": False, "created": _now()}
            self.networks.append(item)
            return {"network": item}

    def _subnet(self, subnet: dict, field: str) -> dict:
        if subnet.get("type") not in ("cloud", "server", "vswitch") or subnet.get("network_zone") not in \
                {zone for _, _, zone in self.locations.values()} or not isinstance(subnet.get("ip_range"), str):
            raise invalid(field, "type must be cloud, server or vswitch, network_zone a known zone, ip_range a network")
        return {"gateway": None, "vswitch_id": None, **subnet}

    def add_subnet(self, ref, body: dict) -> dict:
        """POST /networks/{id}/actions/add_subnet."""
        with self.lock:
            network = self.find("networks", ref)
            subnet = self._subnet(body, "ip_range")
            if any(s["ip_range"] == subnet["ip_range"] for s in network["subnets"]):
                raise CloudError("uniqueness_error", "subnet already exists", {"fields": [{"name": "ip_range"}]})
            network["subnets"].append(subnet)
            return {"action": self._action("add_subnet", [(network["id"], "network")])}

    def create_firewall(self, body: dict) -> dict:
        with self.lock:
            name = self._unique("firewalls", body.get("name"))
            rules = body.get("rules") or []
            for rule in rules:
                if rule.get("direction") not in ("in", "out") or rule.get("protocol") not in ("tcp", "udp", "icmp", "esp", "gre"):
                    raise invalid("rules", "direction must be in or out, protocol tcp, udp, icmp, esp or gre")
                if rule["protocol"] in ("tcp", "udp") and not re.fullmatch(r"\d+(-\d+)?|any", str(rule.get("port", ""))):
                    raise invalid("rules", "tcp and udp rules need a port or port range")
                if not rule.get("source_ips" if rule["direction"] == "in" else "destination_ips"):
                    raise invalid("rules", "a rule needs source_ips (in) or destination_ips (out)")
            rules = [{"description": None, "port": None, "source_ips": [], "destination_ips": [], **rule} for rule in rules]
            item = {"id": next(self._ids), "name": name, "rules": rules, "applied_to": [],
                    "labels": check_labels(body.get("labels")), "created": _now()}
            self.firewalls.append(item)
            return {"firewall": item, "actions": []}

    def create_placement_group(self, body: dict) -> dict:
        with self.lock:
            name = self._unique("placement_groups", body.get("name"))
            if body.get("type") != "spread":
                raise invalid("type", "must be spread")
            item = {"id": next(self._ids), "name": name, "type": "spread", "servers": [],
                    "labels": check_labels(body.get("labels")), "created": _now()}
            self.placement_groups.append(item)
            return {"placement_group": item}

    def delete(self, kind: str, ref) -> None:
        """DELETE of an SSH key, network, firewall or placement group (204)."""
        with self.lock:
            item = self.find(kind, ref)
            if kind == "firewalls" and item["applied_to"]:
                raise CloudError("resource_in_use", "firewall is still applied to resources")
            if kind in ("networks", "placement_groups") and item["servers"]:
                raise CloudError("resource_in_use", f"{kind[:-1].replace('_', ' ')} still has servers")
            if item.get("protection", {}).get("delete"):
                raise CloudError("protected", "resource is protected against deletion")
            self.collection(kind).remove(item)

    # -- servers ------------------------------------------------------------------------------
    def create_server(self, body: dict, build) -> dict:
        """POST /servers. `build(name, server_type, location, labels, ipv4, private_ip)` makes the
        server object (fake_hetzner.cloud_server), so created and listed servers look alike."""
        with self.lock:
            name = body.get("name")
            if not isinstance(name, str) or not HOSTNAME.fullmatch(name):
                raise invalid("name", "must be a valid hostname (RFC 1123)")
            kind = body.get("server_type")
            if kind not in self.server_types:
                kind = next((t["name"] for t in self.server_type_list() if str(t["id"]) == str(kind)), None)
                if kind is None:
                    raise invalid("server_type", f"server type {body.get('server_type')!r} not found")
            arch = self.server_types[kind][4]
            ref = body.get("image")
            known = [img for img in self.image_list() if ref in (img["id"], img["name"]) or str(ref) == str(img["id"])]
            if not known:
                raise invalid("image", f"image {ref!r} not found")
            if not any(img["architecture"] == arch for img in known):
                raise invalid("image", f"image {ref!r} is not available for architecture {arch} of server type {kind}")
            # By name or id (ids count from 1 in the fake's order of locations).
            location = body.get("location") or "fsn1"
            names = list(self.locations)
            if str(location).isdigit() and 1 <= int(location) <= len(names):
                location = names[int(location) - 1]
            if location not in self.locations:
                raise invalid("location", f"location {location!r} not found")
            labels = check_labels(body.get("labels"))
            keys = [self.find("ssh_keys", k, "ssh_keys") for k in body.get("ssh_keys") or []]
            networks = [self.find("networks", n, "networks") for n in body.get("networks") or []]
            firewalls = [self.find("firewalls", f.get("firewall") if isinstance(f, dict) else f, "firewalls")
                         for f in body.get("firewalls") or []]
            group = self.find("placement_groups", body["placement_group"], "placement_group") \
                if body.get("placement_group") is not None else None
            if any(s["name"] == name for s in self.servers):
                raise CloudError("uniqueness_error", "server name is already used", {"fields": [{"name": "name"}]})
            if len(self.servers) >= self.server_limit:
                raise CloudError("resource_limit_exceeded", f"server limit of {self.server_limit} reached",
                                 {"limits": [{"name": "server"}]})
            if group and len(group["servers"]) >= SPREAD_MAX:
                raise CloudError("resource_limit_exceeded", "placement group is full", status=412)
            index = next(self._ids)
            server = build(index - 200000 + 5000, name=name, server_type=kind, location=location, labels=labels,
                           status="initializing", server_id=index)
            server["image"] = next(img for img in known if img["architecture"] == arch)
            server["private_net"] = [{"network": n["id"], "ip": None, "alias_ips": [], "mac_address": None} for n in networks]
            server["public_net"]["firewalls"] = [{"id": f["id"], "status": "applied"} for f in firewalls]
            server["placement_group"] = group
            self.servers.append(server)
            self.created.add(server["id"])
            for net in networks:
                net["servers"].append(server["id"])
            for firewall in firewalls:
                firewall["applied_to"].append({"type": "server", "server": {"id": server["id"]}})
            if group:
                group["servers"].append(server["id"])

            def work():
                given = self.on_create(server, body.get("user_data"), [k["public_key"] for k in keys]) if self.on_create else None
                with self.lock:
                    if given:
                        server["public_net"]["ipv4"]["ip"] = given.get("ipv4", server["public_net"]["ipv4"]["ip"])
                        for net in server["private_net"]:
                            net["ip"] = given.get("private_ip")
            action = self._action("create_server", [(server["id"], "server")], work)
            self.actions[action["id"]]["then"] = lambda: server.update(status="running")
            return {"server": server, "action": action, "next_actions": [],
                    "root_password": None if keys else "fake-root-password"}

    def delete_server(self, ref) -> dict:
        with self.lock:
            server = self.find("servers", ref)
            if server["protection"]["delete"]:
                raise CloudError("protected", "server is protected against deletion (protection.delete)")
            server["status"] = "deleting"

            def work():
                if self.on_delete:
                    self.on_delete(server)

            def gone():
                self.servers.remove(server)
                for item in self.networks + self.placement_groups:
                    if server["id"] in item.get("servers", []):
                        item["servers"].remove(server["id"])
                for firewall in self.firewalls:
                    firewall["applied_to"] = [a for a in firewall["applied_to"] if a.get("server", {}).get("id") != server["id"]]
            action = self._action("delete_server", [(server["id"], "server")], work)
            self.actions[action["id"]]["then"] = gone
            return {"action": action}

    def power(self, ref, on: bool) -> dict:
        """POST /servers/{id}/actions/poweron and poweroff: running or off once the action finished."""
        with self.lock:
            server = self.find("servers", ref)
            action = self._action("start_server" if on else "stop_server", [(server["id"], "server")])
            self.actions[action["id"]]["then"] = lambda: server.update(status="running" if on else "off")
            return {"action": action}

    def change_type(self, ref, body: dict) -> dict:
        """POST /servers/{id}/actions/change_type: only a stopped server changes its type."""
        with self.lock:
            server = self.find("servers", ref)
            if body.get("server_type") not in self.server_types:
                raise invalid("server_type", f"server type {body.get('server_type')!r} not found")
            if server["status"] != "off":
                raise CloudError("server_not_stopped", "server must be stopped before changing its type")
            action = self._action("change_server_type", [(server["id"], "server")])
            self.actions[action["id"]]["then"] = lambda: server["server_type"].update(name=body["server_type"])
            return {"action": action}

    def protect_server(self, ref, body: dict) -> dict:
        """POST /servers/{id}/actions/change_protection."""
        with self.lock:
            server = self.find("servers", ref)
            for what in ("delete", "rebuild"):
                if what in body:
                    if not isinstance(body[what], bool):
                        raise invalid(what, "must be a boolean")
                    server["protection"][what] = body[what]
            return {"action": self._action("change_protection", [(server["id"], "server")])}
