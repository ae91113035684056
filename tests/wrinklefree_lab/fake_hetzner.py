"""A local fake of the Hetzner Cloud API (v1) and the Robot webservice, at the HTTP boundary.

It speaks the documented JSON: Cloud pagination (`meta.pagination`), label selectors, Bearer
auth, `RateLimit-*` headers, error bodies `{"error": {"code", "message", "details"}}` and 429
`rate_limit_exceeded`; Robot's `[{"server": {...}}]` lists, Basic auth, and its 403
`RATE_LIMIT_EXCEEDED` with `max_request`/`interval`. Faults (5xx, malformed JSON, rate limits)
are injected per API (`inject()`; for a fake serving in its own process, a `faults.json` in its
state directory), and every request is counted, so tests can assert what a client did.

    fake = FakeHetzner(cloud_servers=make_cloud_servers(10), robot_servers=make_robot_servers(2))
    fake.start()   # fake.cloud_url, fake.robot_url on 127.0.0.1
"""

from __future__ import annotations

import base64
import collections
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from wrinklefree_lab.fake_hcloud import CloudError, CloudProject, server_type as _server_type

CLOUD_TOKEN = "fake-cloud-token-0123456789abcdef"
ROBOT_USER = "#ws+fakeuser"
ROBOT_PASSWORD = "fake-robot-password"
# An OpenSSH public key the fake accepts, for clients that create SSH keys and servers.
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZha2Uta2V5LWZvci10aGUtdGVzdHMtMDEyMzQ1Njc4OWFi test"

LOCATIONS = {
    "fsn1": ("Falkenstein", "DE", "eu-central"),
    "nbg1": ("Nuremberg", "DE", "eu-central"),
    "hel1": ("Helsinki", "FI", "eu-central"),
}
SERVER_TYPES = {
    "cx22": (2, 4.0, 40, "shared", "x86"),
    "ccx33": (8, 32.0, 240, "dedicated", "x86"),
    "cax31": (8, 16.0, 160, "shared", "arm"),
}
NETWORK = {"id": 4711, "name": "fleet", "ip_range": "10.0.0.0/16", "labels": {}, "protection": {"delete": False},
           "subnets": [{"type": "cloud", "ip_range": "10.0.0.0/16", "network_zone": "eu-central",
                        "gateway": "10.0.0.1", "vswitch_id": None}],
           "routes": [], "servers": [], "load_balancers": [], "expose_routes_to_vswitch": False,
           "created": "2026-01-01T00:00:00+00:00"}
ROBOT_PRODUCTS = ["AX41-NVMe", "AX52", "AX102", "AX162-R"]


def _address(index: int) -> str:
    """Public IPv4 addresses from 198.18.0.0/15, the range reserved for benchmark tests."""
    return f"198.{18 + index // 65024}.{index // 254 % 256}.{index % 254 + 1}"


def _location(name: str) -> dict:
    city, country, zone = LOCATIONS[name]
    return {"id": 1 + list(LOCATIONS).index(name), "name": name, "description": f"{city} DC Park 1",
            "country": country, "city": city, "latitude": 50.0, "longitude": 12.0, "network_zone": zone}


def cloud_server(i: int, *, name: str, ipv4: str, private_ip: str, labels: dict, server_type: str = "cx22",
                 location: str = "fsn1", status: str = "running", server_id: int | None = None) -> dict:
    """One Cloud server shaped like an item of `GET /v1/servers`."""
    cores, memory, disk, cpu_type, arch = SERVER_TYPES[server_type]
    return {
        "id": 1000 + i if server_id is None else server_id,
        "name": name,
        "status": status,
        "created": "2026-01-01T00:00:00+00:00",
        "labels": labels,
        "locked": False,
        "protection": {"delete": False, "rebuild": False},
        "rescue_enabled": False,
        "backup_window": None,
        "primary_disk_size": disk,
        "included_traffic": 21990232555520,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "iso": None,
        "placement_group": None,
        "load_balancers": [],
        "volumes": [],
        "image": {"id": 114690387, "type": "system", "status": "available", "name": "debian-12",
                  "description": "Debian 12", "os_flavor": "debian", "os_version": "12",
                  "architecture": arch, "labels": {}, "deprecated": None, "rapid_deploy": True,
                  "protection": {"delete": False}, "created": "2023-06-13T06:00:02+00:00",
                  "created_from": None, "bound_to": None, "disk_size": 5, "image_size": None,
                  "deleted": None},
        "public_net": {
            "ipv4": {"id": 50000 + i, "ip": ipv4, "blocked": False, "dns_ptr": f"static.{i}.example"},
            "ipv6": {"id": 60000 + i, "ip": f"2001:db8:{i:x}::/64", "blocked": False, "dns_ptr": []},
            "floating_ips": [],
            "firewalls": [],
        },
        "private_net": [{"network": NETWORK["id"], "ip": private_ip, "alias_ips": [],
                         "mac_address": f"86:00:00:{i // 65536 % 256:02x}:{i // 256 % 256:02x}:{i % 256:02x}"}],
        "server_type": _server_type(server_type, SERVER_TYPES[server_type], list(SERVER_TYPES).index(server_type),
                                    list(LOCATIONS)),
        "location": _location(location),
        "datacenter": {"id": 1 + list(LOCATIONS).index(location), "name": f"{location}-dc14",
                       "description": f"{LOCATIONS[location][0]} DC14", "location": _location(location)},
    }


def make_cloud_servers(count: int, *, labels=None) -> list[dict]:
    """Cloud servers spread over locations and types; every 4th in the burst layer, every 10th off."""
    return [
        cloud_server(
            i, name=f"cloud-{i:04d}", ipv4=_address(i), private_ip=f"10.0.{i // 250}.{i % 250 + 2}",
            labels={"layer": "base" if i % 4 else "burst", "role": "bitnet", **(labels or {}).get(i, {})},
            server_type=list(SERVER_TYPES)[i % len(SERVER_TYPES)], location=list(LOCATIONS)[i % len(LOCATIONS)],
            status="running" if i % 10 else "off")
        for i in range(count)
    ]


def robot_server(i: int, *, name: str, ip: str, product: str = "AX41-NVMe", dc: str = "FSN1-DC14",
                 number: int | None = None) -> dict:
    """One dedicated server shaped like an item of Robot's `GET /server`."""
    return {
        "server_ip": ip,
        "server_ipv6_net": f"2001:db8:ffff:{i:x}::",
        "server_number": 100000 + i if number is None else number,
        "server_name": name,
        "product": product,
        "dc": dc,
        "traffic": "unlimited",
        "status": "ready",
        "cancelled": False,
        "paid_until": "2027-01-31",
        "ip": [ip],
        "subnet": [{"ip": f"2001:db8:ffff:{i:x}::", "mask": "64"}],
    }


def make_robot_servers(count: int) -> list[dict]:
    """Dedicated servers cycling through the AX products and Falkenstein data centres."""
    return [robot_server(i, name=f"ax-{i:03d}", ip=_address(60000 + i), product=ROBOT_PRODUCTS[i % len(ROBOT_PRODUCTS)],
                         dc=f"FSN1-DC{i % 20 + 1}") for i in range(count)]


class FakeHetzner:
    """Both APIs on one loopback port: Cloud under /v1, Robot under /robot."""

    def __init__(self, cloud_servers=(), robot_servers=(), *, cloud_limit=3600, robot_limit=200,
                 cloud_token=CLOUD_TOKEN, robot_user=ROBOT_USER, robot_password=ROBOT_PASSWORD, fleet_file=None,
                 faults_file=None, **project):
        """`project`: the writable Cloud project's settings (fake_hcloud.CloudProject: server_limit,
        action_seconds, on_create, on_delete)."""
        self.cloud_servers = list(cloud_servers)
        self.project = CloudProject(self.cloud_servers, LOCATIONS, SERVER_TYPES, [dict(NETWORK)], **project)
        self.robot_servers = list(robot_servers)
        self.cloud_token = cloud_token
        self.robot_auth = base64.b64encode(f"{robot_user}:{robot_password}".encode()).decode()
        self.fleet_file = fleet_file
        self.faults_file = faults_file
        self._fleet_mtime = None
        self.cloud_limit = cloud_limit
        self.robot_limit = robot_limit
        self.requests: collections.Counter[str] = collections.Counter()
        # Cloud requests answered 429 (the rate limit), for benchmarks of a client's API use.
        self.refused = 0
        self.faults: dict[str, collections.deque] = {"cloud": collections.deque(), "robot": collections.deque()}
        self._used = {"cloud": 0, "robot": 0}
        self._window_start = time.time()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- control -------------------------------------------------------------------------
    def inject(self, api: str, fault: str, times: int = 1) -> None:
        """Answer the next `times` requests to `api` ("cloud"/"robot") with a fault:
        "500", "502", "429" (rate limited, RateLimit-Reset 1 s ahead), "malformed", or (cloud)
        "deleted": the first server is deleted just before the request is answered, as when
        someone deletes a server while a client pages through the list; "STATUS:code" (cloud) an
        error of that status and code, e.g. "422:resource_limit_exceeded"; "ok" answers as usual
        (to aim the next fault at a later request). "FAULT@/v1/PATH" waits for a request whose path
        starts with /v1/PATH (e.g. "500@/v1/actions/": a 5xx while a client waits on an action),
        "FAULT@POST /v1/PATH" for one of that method (e.g. "ok@POST /v1/servers" twice, then
        "422:resource_limit_exceeded@POST /v1/servers": the third server refused)."""
        self.faults[api].extend([fault] * times)

    def reload_fleet(self) -> None:
        """Re-read `fleet_file` when it changed: {"cloud": [cloud_server kwargs], "robot": [robot_server kwargs]}.
        The servers created through the Cloud API stay."""
        if not self.fleet_file:
            return
        with self._lock:
            mtime = os.stat(self.fleet_file).st_mtime_ns
            if mtime == self._fleet_mtime:
                return
            with open(self.fleet_file, encoding="utf-8") as handle:
                fleet = json.load(handle)
            # In place: the project's servers are this list.
            self.cloud_servers[:] = [cloud_server(i, **spec) for i, spec in enumerate(fleet.get("cloud", []))] + [
                s for s in self.cloud_servers if s["id"] in self.project.created]
            self.robot_servers = [robot_server(i, **spec) for i, spec in enumerate(fleet.get("robot", []))]
            self._fleet_mtime = mtime

    def start(self, port: int = 0) -> FakeHetzner:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cloud_url(self) -> str:
        return self.url + "/v1"

    @property
    def robot_url(self) -> str:
        return self.url + "/robot"

    def _take_quota(self, api: str) -> tuple[bool, int, int]:
        """Count one request against the hourly quota; return (allowed, remaining, reset)."""
        with self._lock:
            limit = self.cloud_limit if api == "cloud" else self.robot_limit
            now = time.time()
            if now - self._window_start >= 3600:
                self._window_start, self._used = now, {"cloud": 0, "robot": 0}
            reset = int(self._window_start + 3600)
            if self._used[api] >= limit:
                return False, 0, reset
            self._used[api] += 1
            return True, limit - self._used[api], reset

    def _next_fault(self, api: str, path: str = "", method: str = "GET") -> str | None:
        with self._lock:
            # Faults for a fake in another process: {"cloud": ["500", ...], "robot": [...]} replaces
            # the queues (an empty list clears one), read once.
            if self.faults_file and os.path.exists(self.faults_file):
                with open(self.faults_file, encoding="utf-8") as handle:
                    for name, faults in json.load(handle).items():
                        self.faults[name] = collections.deque(faults)
                os.unlink(self.faults_file)
            for queued in self.faults[api]:
                fault, _, target = queued.partition("@")
                if path.startswith(target) or f"{method} {path}".startswith(target):
                    self.faults[api].remove(queued)
                    return fault
            return None


def _selector_matches(selector: str, labels: dict) -> bool:
    """Hetzner label selectors: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`."""
    for term in filter(None, (t.strip() for t in re.split(r",(?![^()]*\))", selector))):
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            values = {v.strip() for v in m.group(3).split(",")}
            if (labels.get(m.group(1)) in values) != (m.group(2) == "in"):
                return False
        elif m := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", term):
            equal = labels.get(m.group(1)) == m.group(3)
            if equal != (m.group(2) != "!="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHetzner
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body, headers=None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        api = "cloud" if parts.path.startswith("/v1/") else "robot" if parts.path.startswith("/robot/") else None
        if api is None:
            self._send(404, {"error": {"code": "not_found", "message": "no such API"}})
            return
        self.fake.requests[f"{api} {parts.path}"] += 1
        self.fake.reload_fleet()
        (self._cloud if api == "cloud" else self._robot)(parts.path, parse_qs(parts.query))

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._cloud_write("POST")

    def do_DELETE(self) -> None:  # noqa: N802 (http.server's naming)
        self._cloud_write("DELETE")

    def _cloud_write(self, method: str) -> None:
        """The project's writes: POST creates (and server actions), DELETE deletes, under the same
        authentication, quota and faults as reads."""
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.fake.requests[f"cloud {method} {path}"] += 1
        rate = self._cloud_gate(path, method)
        if rate is None:
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._cloud_error(400, "json_error", "invalid JSON in the request body", rate)
            return
        project = self.fake.project
        routes = {
            ("POST", r"/v1/ssh_keys"): lambda: (201, project.create_ssh_key(body)),
            ("POST", r"/v1/networks"): lambda: (201, project.create_network(body)),
            ("POST", r"/v1/firewalls"): lambda: (201, project.create_firewall(body)),
            ("POST", r"/v1/placement_groups"): lambda: (201, project.create_placement_group(body)),
            ("POST", r"/v1/servers"): lambda: (201, project.create_server(
                body, lambda i, **kw: cloud_server(i, ipv4=_address(i), private_ip="", **kw))),
            ("POST", r"/v1/networks/(\d+)/actions/add_subnet"): lambda: (201, project.add_subnet(int(m.group(1)), body)),
            ("POST", r"/v1/servers/(\d+)/actions/poweroff"): lambda: (201, project.power(int(m.group(1)), on=False)),
            ("POST", r"/v1/servers/(\d+)/actions/poweron"): lambda: (201, project.power(int(m.group(1)), on=True)),
            ("POST", r"/v1/servers/(\d+)/actions/change_type"): lambda: (201, project.change_type(int(m.group(1)), body)),
            ("POST", r"/v1/servers/(\d+)/actions/change_protection"):
                lambda: (201, project.protect_server(int(m.group(1)), body)),
            ("DELETE", r"/v1/servers/(\d+)"): lambda: (200, project.delete_server(int(m.group(1)))),
            ("DELETE", r"/v1/(ssh_keys|networks|firewalls|placement_groups)/(\d+)"):
                lambda: (204, project.delete(m.group(1), int(m.group(2)))),
        }
        for (verb, pattern), handler in routes.items():
            if verb == method and (m := re.fullmatch(pattern, path)):
                try:
                    status, answer = handler()
                except CloudError as error:
                    self._send(error.status, error.body(), rate)
                    return
                self._send(status, b"" if status == 204 else answer, rate)
                return
        self._cloud_error(404, "not_found", f"{method} {path} is not served by the fake", rate)

    # -- Cloud ---------------------------------------------------------------------------
    def _cloud_error(self, status: int, code: str, message: str, headers=None) -> None:
        self._send(status, {"error": {"code": code, "message": message, "details": {}}}, headers)

    def _cloud_gate(self, path: str, method: str = "GET") -> dict | None:
        """Authentication, the hourly quota and injected faults; the rate headers when the request
        may go on, None when it was answered here."""
        if self.headers.get("Authorization") != f"Bearer {self.fake.cloud_token}":
            self._cloud_error(401, "unauthorized", "unable to authenticate")
            return None
        allowed, remaining, reset = self.fake._take_quota("cloud")
        rate = {"RateLimit-Limit": self.fake.cloud_limit, "RateLimit-Remaining": remaining, "RateLimit-Reset": reset}
        fault = self.fake._next_fault("cloud", path, method)
        if not allowed or fault == "429":
            self.fake.refused += 1
            rate.update({"RateLimit-Remaining": 0, "RateLimit-Reset": int(time.time()) + 1 if fault else reset})
            self._cloud_error(429, "rate_limit_exceeded", "limit of 3600 requests per hour reached", rate)
        elif fault in ("500", "502"):
            self._cloud_error(int(fault), "service_error" if fault == "500" else "bad_gateway", "injected fault", rate)
        elif fault and ":" in fault:
            status, code = fault.split(":", 1)
            self._cloud_error(int(status), code, f"injected {code}", rate)
        elif fault == "malformed":
            self._send(200, b'{"servers": [{"id": 1, "name": ', rate)
        elif fault == "deleted" and path == "/v1/servers":
            with self.fake._lock:
                self.fake.cloud_servers.pop(0)
            return rate
        else:
            return rate
        return None

    def _cloud(self, path: str, query: dict) -> None:
        rate = self._cloud_gate(path)
        if rate is None:
            return
        project = self.fake.project
        if path == "/v1/servers":
            self._list(query, rate, "servers", self._filter_servers(query))
        elif path in ("/v1/networks", "/v1/ssh_keys", "/v1/firewalls", "/v1/placement_groups"):
            kind = path.rsplit("/", 1)[1]
            items = [i for i in project.collection(kind)
                     if all(str(i.get(k)) == query[k][0] for k in ("name", "fingerprint") if k in query)
                     and _selector_matches(query.get("label_selector", [""])[0], i.get("labels", {}))]
            self._list(query, rate, kind, items)
        elif m := re.fullmatch(r"/v1/(networks|ssh_keys|firewalls|placement_groups)/(\d+)", path):
            try:
                self._send(200, {m.group(1)[:-1]: project.find(m.group(1), int(m.group(2)))}, rate)
            except CloudError as error:
                self._send(error.status, error.body(), rate)
        elif m := re.fullmatch(r"/v1/actions/(\d+)", path):
            try:
                self._send(200, {"action": project.action(int(m.group(1)))}, rate)
            except CloudError as error:
                self._send(error.status, error.body(), rate)
        elif path == "/v1/server_types":
            self._list(query, rate, "server_types", [s for s in project.server_type_list()
                                                     if "name" not in query or s["name"] == query["name"][0]])
        elif path == "/v1/images":
            self._list(query, rate, "images", [i for i in project.image_list()
                                               if all(i[k] == query[k][0] for k in ("name", "architecture", "type") if k in query)])
        elif path == "/v1/locations":
            self._list(query, rate, "locations", [_location(name) for name in LOCATIONS
                                                  if "name" not in query or name == query["name"][0]])
        elif m := re.fullmatch(r"/v1/servers/(\d+)", path):
            found = [s for s in self.fake.cloud_servers if s["id"] == int(m.group(1))]
            if found:
                self._send(200, {"server": found[0]}, rate)
            else:
                self._cloud_error(404, "not_found", "server not found", rate)
        else:
            self._cloud_error(404, "not_found", f"{path} is not served by the fake", rate)

    def _filter_servers(self, query: dict) -> list[dict]:
        servers = self.fake.cloud_servers
        if "label_selector" in query:
            servers = [s for s in servers if _selector_matches(query["label_selector"][0], s["labels"])]
        if "status" in query:
            servers = [s for s in servers if s["status"] in query["status"]]
        if "name" in query:
            servers = [s for s in servers if s["name"] == query["name"][0]]
        return servers

    def _list(self, query: dict, rate: dict, key: str, items: list[dict]) -> None:
        """A paginated list response, as every Cloud list endpoint gives it."""
        try:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["25"])[0])
        except ValueError:
            self._cloud_error(400, "invalid_input", "page and per_page must be integers", rate)
            return
        if page < 1 or not 1 <= per_page <= 50:
            self._cloud_error(400, "invalid_input", "page >= 1 and 1 <= per_page <= 50", rate)
            return
        last_page = max(1, -(-len(items) // per_page))
        self._send(200, {
            key: items[(page - 1) * per_page: page * per_page],
            "meta": {"pagination": {
                "page": page, "per_page": per_page,
                "previous_page": page - 1 if page > 1 else None,
                "next_page": page + 1 if page < last_page else None,
                "last_page": last_page, "total_entries": len(items),
            }},
        }, rate)

    # -- Robot ---------------------------------------------------------------------------
    def _robot_error(self, status: int, code: str, message: str, **extra) -> None:
        self._send(status, {"error": {"status": status, "code": code, "message": message, **extra}})

    def _robot(self, path: str, query: dict) -> None:
        if self.headers.get("Authorization") != f"Basic {self.fake.robot_auth}":
            self._robot_error(401, "UNAUTHORIZED", "Unauthorized")
            return
        allowed, _, _ = self.fake._take_quota("robot")
        fault = self.fake._next_fault("robot")
        if not allowed or fault == "429":
            self._robot_error(403, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded",
                              max_request=self.fake.robot_limit, interval=3600)
        elif fault in ("500", "502"):
            self._robot_error(int(fault), "INTERNAL_ERROR", "injected fault")
        elif fault == "malformed":
            self._send(200, b"[{\"server\": ")
        elif path == "/robot/server":
            if not self.fake.robot_servers:
                self._robot_error(404, "SERVER_NOT_FOUND", "No server found")
            else:
                self._send(200, [{"server": s} for s in self.fake.robot_servers])
        elif m := re.fullmatch(r"/robot/server/(\d+)", path):
            found = [s for s in self.fake.robot_servers if s["server_number"] == int(m.group(1))]
            if found:
                self._send(200, {"server": found[0]})
            else:
                self._robot_error(404, "SERVER_NOT_FOUND", "Server not found")
        else:
            self._robot_error(404, "NOT_FOUND", f"{path} is not served by the fake")


# -- a long-running fake for the lab ---------------------------------------------------------
# The lab registers its hosts in STATE_DIR/fleet.json and discovers them through the project's
# inventory plugin, like production does. Credentials are random per lab, in files of mode 0600.
#   python tests/wrinklefree_lab/fake_hetzner.py start|stop|serve STATE_DIR

CREDENTIAL_FILES = ("cloud-token", "robot-user", "robot-password")


def _write_private(path: str, text: str) -> None:
    """A new file only its owner reads (it must not exist yet)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as handle:
        handle.write(text)


def _credentials(state: str) -> dict[str, str]:
    values = {}
    for name in CREDENTIAL_FILES:
        path = os.path.join(state, name)
        if not os.path.exists(path):
            value = "#ws+lab" if name == "robot-user" else secrets.token_hex(24)
            _write_private(path, value)
        with open(path, encoding="utf-8") as handle:
            values[name.replace("-", "_")] = handle.read().strip()
    return values


def _running_pid(state: str) -> int | None:
    """The PID of this state directory's fake if it is alive (and really is the fake)."""
    try:
        with open(os.path.join(state, "fake.pid"), encoding="utf-8") as handle:
            pid = int(handle.read())
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"serve" in cmdline and os.path.abspath(state).encode() in cmdline else None


class HostFactory:
    """The lab's host factory: each server created through the Cloud API (by provision.yml) becomes
    a lab host, made by the playbook that STATE/factory.json names (playbooks/lab/server.yml, with
    the lab's settings) at the first free address of the lab's; a deleted server's host is removed
    the same way. Without factory.json a server is only an entry in the API, as in the tests' fakes."""

    def __init__(self, state: str, fake: FakeHetzner):
        self.state, self.fake = state, fake
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        # Addresses handed out before: a new host takes a fresh one while there is one, as an
        # address just freed may still sit in this machine's neighbour table and SSH masters.
        self._given: set[str] = set()

    def _config(self) -> dict | None:
        try:
            with open(os.path.join(self.state, "factory.json"), encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def _run(self, config: dict, server: dict, **lab_server) -> None:
        """The factory's playbook for one server; its failure fails the API's action with the
        playbook's last lines."""
        with tempfile.TemporaryDirectory(dir=self.state) as scratch:
            if lab_server.get("user_data"):
                path = os.path.join(scratch, "user-data")
                _write_private(path, lab_server["user_data"])
                lab_server["user_data"] = path
            spec = os.path.join(scratch, "server.json")
            _write_private(spec, json.dumps({**config["vars"],
                                             "lab_server": {"name": server["name"], "labels": server["labels"], **lab_server}}))
            proc = subprocess.run([*config["command"], "-e", f"@{spec}"], cwd=config["cwd"], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"the lab host {server['name']} was not {lab_server['state']}: "
                               + " ".join(proc.stdout.strip().splitlines()[-15:]))

    def create(self, server: dict, user_data: str | None, public_keys: list[str]) -> dict | None:
        config = self._config()
        if config is None:
            return None
        with self._lock:
            used = {s["public_net"]["ipv4"]["ip"] for s in self.fake.cloud_servers if s is not server}
            used |= {s["server_ip"] for s in self.fake.robot_servers} | self._pending
            free = [a for a in config["addresses"] if a not in used]
            if not free:
                raise RuntimeError("the lab has no free address left")
            address = next((a for a in free if a not in self._given), free[0])
            self._pending.add(address)
            self._given.add(address)
        try:
            self._run(config, server, address=address, state="present", public_keys=public_keys, user_data=user_data)
        finally:
            with self._lock:
                self._pending.discard(address)
        return {"ipv4": address, "private_ip": address}

    def delete(self, server: dict) -> None:
        config = self._config()
        if config is not None:
            self._run(config, server, address=server["public_net"]["ipv4"]["ip"], state="absent", public_keys=[])


def _serve(state: str) -> None:
    fleet = os.path.join(state, "fleet.json")
    if not os.path.exists(fleet):
        with open(fleet, "w", encoding="utf-8") as handle:
            json.dump({}, handle)
    fake = FakeHetzner(fleet_file=fleet, faults_file=os.path.join(state, "faults.json"), **_credentials(state))
    factory = HostFactory(state, fake)
    fake.project.on_create, fake.project.on_delete = factory.create, factory.delete
    fake.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    for name, value in (("fake.pid", str(os.getpid())), ("endpoint", fake.url)):
        with open(os.path.join(state, name + ".tmp"), "w", encoding="utf-8") as handle:
            handle.write(value)
        os.replace(os.path.join(state, name + ".tmp"), os.path.join(state, name))
    stopped.wait()
    fake.stop()
    for name in ("fake.pid", "endpoint"):
        os.unlink(os.path.join(state, name))


def _start(state: str) -> str:
    os.makedirs(state, mode=0o700, exist_ok=True)
    _credentials(state)
    if _running_pid(state):
        return "running"
    for name in ("fake.pid", "endpoint"):
        if os.path.exists(os.path.join(state, name)):
            os.unlink(os.path.join(state, name))
    with open(os.path.join(state, "fake.log"), "ab") as log:
        subprocess.Popen([sys.executable, os.path.abspath(__file__), "serve", os.path.abspath(state)],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    for _ in range(100):
        if os.path.exists(os.path.join(state, "endpoint")):
            return "started"
        time.sleep(0.1)
    raise SystemExit(f"the fake did not start; see {state}/fake.log")


def _stop(state: str) -> str:
    pid = _running_pid(state)
    if not pid:
        return "not running"
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _running_pid(state):
            return "stopped"
        time.sleep(0.1)
    raise SystemExit(f"the fake (pid {pid}) did not stop")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop", "serve"):
        raise SystemExit("usage: fake_hetzner.py start|stop|serve STATE_DIR")
    if sys.argv[1] == "serve":
        _serve(sys.argv[2])
    else:
        print(_start(sys.argv[2]) if sys.argv[1] == "start" else _stop(sys.argv[2]))
