"""Inventory plugin: Hetzner Cloud servers and Robot dedicated servers as one fleet."""

from __future__ import annotations

DOCUMENTATION = r"""
name: hetzner_fleet
short_description: Hetzner Cloud and dedicated (Robot) servers as one fleet
description:
  - Lists Hetzner Cloud servers through the Cloud API (C(GET /servers), every page) and
    dedicated servers through the Robot webservice (C(GET /server)), and merges them into one
    inventory with the same groups and host variables for both.
  - "Groups: the C(layer) label (V(base), V(burst)); every role of the C(role) label, whose
    value lists roles separated by dots (V(bitnet.wireguard) puts a host in C(bitnet) and
    C(wireguard)); C(location_<name>) (V(fsn1), V(nbg1), V(hel1), ...); C(product_<name>)
    (Cloud server type or Robot product, e.g. C(product_cx22), C(product_ax41_nvme));
    C(hetzner_cloud) and C(hetzner_robot)."
  - "Host variables, all prefixed C(hetzner_): C(source) (V(cloud) or V(robot)), C(id),
    C(status), C(labels), C(layer), C(roles), C(ipv4), C(ipv6), C(ipv6_network),
    C(private_ipv4), C(location), C(datacenter), C(product), C(price_hourly) (a Cloud server's
    net price per hour in its location, from the API's C(server_type.prices); null for Robot
    servers and when the API gives none), and C(cpu) (C(model), C(cores), C(architecture)). Robot servers carry no labels in Hetzner: give them in
    O(robot_default_labels) and O(robot_hosts)."
  - Failure is loud. A rejected credential, an unreachable API, a malformed reply or an exhausted
    rate limit raises an error naming the API and the reason, so C(ansible-inventory) and
    C(ansible-playbook) exit non-zero (with C(inventory_any_unparsed_is_failed)) instead of
    returning an empty fleet.
  - HTTP 429 and Robot's C(RATE_LIMIT_EXCEEDED), 5xx replies and connection failures are retried
    with exponential backoff (1 s, 2 s, 4 s, ...) for at most O(retry_max_wait) seconds. A Cloud
    429 waits at least the time one request takes to replenish (3600 s / C(RateLimit-Limit)) and
    never past C(RateLimit-Reset).
  - Credentials and endpoints may be Jinja templates (lookups, extra vars, C(inventory_dir)) or
    Vault-encrypted values; they are never written to the cache or shown in messages.
  - The inventory file name must end in C(hetzner.yml) or C(hetzner.yaml).
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks the file as a source of this plugin.
    required: true
    choices: [wrinklefree.deployer.hetzner_fleet, hetzner_fleet]
  cloud:
    description: List Hetzner Cloud servers.
    type: bool
    default: true
  cloud_endpoint:
    description: Base URL of the Hetzner Cloud API.
    type: str
    default: https://api.hetzner.cloud/v1
    env:
      - name: HCLOUD_ENDPOINT
  cloud_token:
    description:
      - API token of the Hetzner Cloud project (read-only is enough).
      - Required when O(cloud=true).
    type: str
    env:
      - name: HCLOUD_TOKEN
  cloud_label_selector:
    description: Hetzner label selector applied by the API, e.g. V(layer in (base,burst)).
    type: str
    default: ""
  cloud_status:
    description: Server statuses to list; an empty list lists every status.
    type: list
    elements: str
    default: [running]
  cloud_network:
    description:
      - ID of the Cloud network whose address becomes C(hetzner_private_ipv4).
      - By default the server's first private network.
    type: int
  robot:
    description: List dedicated servers from the Robot webservice.
    type: bool
    default: true
  robot_endpoint:
    description: Base URL of the Robot webservice.
    type: str
    default: https://robot-ws.your-server.de
    env:
      - name: HROBOT_ENDPOINT
  robot_user:
    description:
      - Robot webservice user (C(#ws+...)). Required when O(robot=true).
    type: str
    env:
      - name: HROBOT_API_USER
  robot_password:
    description: Robot webservice password. Required when O(robot=true).
    type: str
    env:
      - name: HROBOT_API_PASSWORD
  robot_status:
    description: Robot server statuses to list (V(ready), V(in process)); empty lists all.
    type: list
    elements: str
    default: [ready]
  robot_adopt:
    description:
      - The dedicated servers this fleet takes over, by server name, number or shell-style
        pattern (V(ax-fsn-*)). Only these join (as base hosts, with a default-deny firewall
        and a replaced sshd configuration), so an account's other servers are left alone.
      - Empty (the default) adopts none. Servers that are cancelled are never adopted.
    type: list
    elements: str
    default: []
  robot_default_labels:
    description: Labels every adopted dedicated server gets (Robot has no labels of its own).
    type: dict
    default:
      layer: base
  robot_hosts:
    description:
      - Per dedicated server, keyed by server name or number, extra C(labels) (merged over
        O(robot_default_labels)) and its C(private_ipv4) (for example its vSwitch address).
    type: dict
    default: {}
  robot_cpus:
    description:
      - CPU of each Robot product (the Robot API does not report it), merged over a built-in
        table of current AX, EX and RX products. Each value has C(model), C(cores) and
        C(architecture).
    type: dict
    default: {}
  locations:
    description: Keep only servers in these locations (V(fsn1), V(nbg1), V(hel1), ...); empty keeps all.
    type: list
    elements: str
    default: []
  connect_via:
    description:
      - Which address becomes C(ansible_host), in order of preference; the first one a host has wins.
      - V(wireguard) makes C(ansible_host) a reference to the host variable C(mesh_address), which
        the vars plugin wrinklefree.deployer.wireguard_mesh gives each member of the mesh, falling
        back to the next choice (or failing with that reason) while the host has none.
    type: list
    elements: str
    choices: [ipv4, ipv6, private, wireguard]
    default: [ipv4]
  timeout:
    description: Seconds to wait for one HTTP reply.
    type: int
    default: 30
  retry_max_wait:
    description: Total seconds to spend waiting between retries of one request before failing.
    type: float
    default: 120
notes:
  - A relative O(cache_connection) is resolved against the inventory file's directory.
  - The cache is keyed on the inventory file, on every option that changes the API queries, and on the account
    (a salted hash of the credentials, never the credentials), so a staging token never reads a production cache.
"""

EXAMPLES = r"""
# inventories/production/fleet.hetzner.yml; credentials from HCLOUD_TOKEN,
# HROBOT_API_USER and HROBOT_API_PASSWORD (or Vault-encrypted values here).
plugin: wrinklefree.deployer.hetzner_fleet
cloud_label_selector: layer
robot_hosts:
  ax-fsn-01:
    labels: {role: bitnet.wireguard.sky_controller}
    private_ipv4: 10.0.1.2
connect_via: [wireguard, ipv4]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ../../.cache/inventory
cache_timeout: 600
keyed_groups:
  - key: hetzner_cpu.architecture
    prefix: arch
"""

import base64
import fnmatch
import hashlib
import ipaddress
import json
import os
import re
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.template import trust_as_template

# The Robot API does not report CPUs; these are Hetzner's published specs of each product.
ROBOT_CPUS = {
    "AX41-NVMe": {"model": "AMD Ryzen 5 3600", "cores": 6, "architecture": "x86_64"},
    "AX42": {"model": "AMD Ryzen 7 PRO 8700GE", "cores": 8, "architecture": "x86_64"},
    "AX52": {"model": "AMD Ryzen 7 7700", "cores": 8, "architecture": "x86_64"},
    "AX102": {"model": "AMD Ryzen 9 7950X3D", "cores": 16, "architecture": "x86_64"},
    "AX162-R": {"model": "AMD EPYC 9454P", "cores": 48, "architecture": "x86_64"},
    "AX162-S": {"model": "AMD EPYC 9454P", "cores": 48, "architecture": "x86_64"},
    "EX44": {"model": "Intel Core i5-13500", "cores": 14, "architecture": "x86_64"},
    "EX101": {"model": "Intel Core i9-13900", "cores": 24, "architecture": "x86_64"},
    "RX170": {"model": "Ampere Altra Q80-30", "cores": 80, "architecture": "aarch64"},
    "RX220": {"model": "Ampere Altra Q80-30", "cores": 80, "architecture": "aarch64"},
}
# Cloud server types by family: the API gives cores and architecture, not the CPU model.
CLOUD_CPU_FAMILIES = {
    "cx": "Intel Xeon (shared vCPU)",
    "cpx": "AMD EPYC (shared vCPU)",
    "ccx": "AMD EPYC (dedicated vCPU)",
    "cax": "Ampere Altra (shared vCPU)",
}
ARCHITECTURES = {"x86": "x86_64", "arm": "aarch64"}
PER_PAGE = 50  # the Cloud API's maximum


class HetznerApiError(AnsibleError):
    """A Hetzner API call that failed for good; the message names the API and the reason."""


class _Api:
    """GET requests to one Hetzner API with retries; counts the requests it sends."""

    def __init__(self, label, base_url, authorization, credentials, timeout, max_wait, display):
        self.label = label
        self.credentials = credentials
        self.base_url = base_url.rstrip("/")
        self._authorization = authorization
        self.timeout = timeout
        self.max_wait = max_wait
        self.display = display
        self.requests = 0

    def get(self, path, query=None, *, missing_ok_code=None):
        """The decoded JSON reply of GET path, or None when the API answers `missing_ok_code`."""
        target = path + ("?" + urlencode(query, doseq=True) if query else "")
        shown = path + (f" page {query['page']}" if query and "page" in query else "")
        waited, attempt = 0.0, 0
        while True:
            status, headers, body, reason = self._send(target)
            if status == 200:
                try:
                    return json.loads(body)
                except ValueError as exc:
                    raise HetznerApiError(f"{self.label}: GET {shown} returned malformed JSON ({exc})") from None
            error = _error_of(body)
            if missing_ok_code and error.get("code") == missing_ok_code:
                return None
            wait = self._retry_wait(status, headers, error, attempt)
            if wait is None:
                raise HetznerApiError(f"{self.label}: GET {shown} failed: {reason or self._describe(status, error)}")
            if waited + wait > self.max_wait:
                raise HetznerApiError(
                    f"{self.label}: GET {shown} still failing after {attempt + 1} attempts and {waited:.0f} s "
                    f"of waiting (retry_max_wait {self.max_wait:g} s): {reason or self._describe(status, error)}"
                    + _rate_limit_hint(status, headers, error))
            self.display.vvv(f"hetzner_fleet: {self.label} GET {shown}: {reason or status}, retrying in {wait:.1f} s")
            time.sleep(wait)
            waited += wait
            attempt += 1

    def _send(self, target):
        """(status, headers, body, transport error) of one request."""
        self.requests += 1
        try:
            # No redirects: urllib would send the credentials on to wherever one points.
            reply = open_url(self.base_url + target, method="GET", timeout=self.timeout, use_netrc=False,
                             headers={"Authorization": self._authorization, "Accept": "application/json"},
                             http_agent="wrinklefree-deployer hetzner_fleet", follow_redirects="none")
            return 200, reply.headers, reply.read(), None
        except HTTPError as exc:
            return exc.code, exc.headers, exc.read(), None
        except (URLError, OSError) as exc:
            return None, {}, b"", f"cannot reach {self.base_url}: {getattr(exc, 'reason', exc)}"

    def _describe(self, status, error):
        if status in (301, 302, 303, 307, 308):
            return f"HTTP {status}: a redirect, not followed (it would carry the credentials elsewhere); check the endpoint"
        detail = f"{error.get('code', '')}: {error.get('message', '')}" if error else "no error body"
        if status in (401, 403) and error.get("code") != "RATE_LIMIT_EXCEEDED":
            detail += f" (check {self.credentials})"
        return f"HTTP {status} {detail}"

    def _retry_wait(self, status, headers, error, attempt):
        """Seconds to wait before retrying, or None when retrying cannot help."""
        backoff = float(2 ** attempt)
        if status == 429:
            limit = _int_header(headers, "RateLimit-Limit")
            reset = _int_header(headers, "RateLimit-Reset")
            # Hetzner replenishes the quota gradually: one request per 3600/limit seconds.
            wait = max(backoff, 3600.0 / limit if limit else 1.0)
            return min(wait, max(reset - time.time(), 1.0)) if reset else wait
        if status == 403 and error.get("code") == "RATE_LIMIT_EXCEEDED":
            return backoff
        if status is None or status >= 500:
            return backoff
        return None


def _error_of(body):
    """The `error` object of a Hetzner error reply, or {} when the body is not one."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _rate_limit_hint(status, headers, error):
    if status == 429:
        reset = _int_header(headers, "RateLimit-Reset")
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset)) if reset else "unknown"
        return (f"; rate limit {_int_header(headers, 'RateLimit-Limit') or '?'} requests/hour, "
                f"fully replenished at {when}; enable the inventory cache to spend fewer requests")
    if error.get("code") == "RATE_LIMIT_EXCEEDED":
        return (f"; Robot allows {error.get('max_request', '?')} requests per {error.get('interval', '?')} s; "
                "enable the inventory cache to spend fewer requests")
    return ""


def _is_loopback(hostname):
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname or "").is_loopback
    except ValueError:
        return False


def _int_header(headers, name):
    try:
        return int(headers.get(name))
    except (TypeError, ValueError):
        return 0


def _host_address(network, index):
    """The index-th address of an IPv6 network, or None."""
    return str(ipaddress.ip_network(network, strict=False)[index]) if network else None


def _location_price(server_type, location):
    """The net price per hour of a server type in a location (the API's strings), or None."""
    for entry in server_type.get("prices") or []:
        if entry.get("location") == location:
            try:
                return float(entry["price_hourly"]["net"])
            except (KeyError, TypeError, ValueError):
                return None
    return None


def _group(name):
    return re.sub(r"[^a-z0-9_]", "_", str(name).lower())


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "wrinklefree.deployer.hetzner_fleet"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("hetzner.yml", "hetzner.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        self._base_dir = os.path.dirname(os.path.abspath(path))
        self._reload_cache_relative_to_file()
        self.templar.available_variables = {**self._vars, "inventory_dir": self._base_dir}

        fingerprint = self._query_fingerprint()
        cache_key = self.get_cache_key(path)
        use_cache = bool(self.get_option("cache"))
        servers = None
        if use_cache and cache:
            try:
                cached = self._cache[cache_key]
            except KeyError:
                cached = None
            if isinstance(cached, dict) and cached.get("fingerprint") == fingerprint:
                servers = cached
                self.display.vvv(f"hetzner_fleet: {path}: servers from the cache, no API request")
        if servers is None:
            servers = {"fingerprint": fingerprint, "cloud": self._cloud_servers(), "robot": self._robot_servers()}
            if use_cache:
                self._cache[cache_key] = servers
        self._populate(servers)

    # -- options -----------------------------------------------------------------------------
    def _reload_cache_relative_to_file(self):
        connection = self.get_option("cache_connection") if self.get_option("cache") else None
        if connection and not os.path.isabs(os.path.expanduser(connection)):
            self.set_option("cache_connection", os.path.normpath(os.path.join(self._base_dir, connection)))
            self.load_cache_plugin()

    def _secret(self, name, needed_for):
        value = self.get_option(name)
        if value is not None:
            value = to_text(self.templar.template(value))
        if not value:
            raise AnsibleParserError(f"hetzner_fleet: option '{name}' is required when '{needed_for}' is true; "
                                     f"set it in the environment ({self._env_name(name)}) or the inventory file (Vault)")
        return value

    def _env_name(self, option):
        return {"cloud_token": "HCLOUD_TOKEN", "robot_user": "HROBOT_API_USER",
                "robot_password": "HROBOT_API_PASSWORD"}[option]

    def _query_fingerprint(self):
        """What the API answers depend on, so a changed selector, endpoint or account misses the
        cache: the credentials enter only as a slow salted hash (a Robot password may be weak)."""
        options = ("cloud", "cloud_endpoint", "cloud_label_selector", "cloud_status", "robot", "robot_endpoint",
                   "robot_status", "robot_adopt")
        query = [to_text(self.templar.template(self.get_option(o))) for o in options]
        credentials = [self._secret("cloud_token", "cloud") if self.get_option("cloud") else "",
                       (self._secret("robot_user", "robot") + ":" + self._secret("robot_password", "robot"))
                       if self.get_option("robot") else ""]
        account = hashlib.pbkdf2_hmac("sha256", json.dumps(credentials).encode(), b"hetzner_fleet cache", 100_000).hex()
        return hashlib.sha256(json.dumps([query, account], sort_keys=True).encode()).hexdigest()

    def _api(self, label, endpoint_option, authorization, credentials):
        endpoint = to_text(self.templar.template(self.get_option(endpoint_option)))
        parts = urlsplit(endpoint)
        if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname)):
            raise AnsibleParserError(f"hetzner_fleet: {endpoint_option} must be an https:// URL (http:// only on "
                                     f"loopback, for a local test API), got {endpoint!r}")
        return _Api(label, endpoint, authorization, credentials,
                    self.get_option("timeout"), float(self.get_option("retry_max_wait")), self.display)

    # -- the APIs ----------------------------------------------------------------------------
    def _cloud_servers(self):
        if not self.get_option("cloud"):
            return []
        api = self._api("Hetzner Cloud API", "cloud_endpoint", "Bearer " + self._secret("cloud_token", "cloud"),
                        "cloud_token / HCLOUD_TOKEN")
        query = {"per_page": PER_PAGE}
        if self.get_option("cloud_label_selector"):
            query["label_selector"] = self.get_option("cloud_label_selector")
        if self.get_option("cloud_status"):
            query["status"] = self.get_option("cloud_status")
        servers, page, totals = [], 1, set()
        while page:
            reply = api.get("/servers", {**query, "page": page})
            try:
                servers.extend(reply["servers"])
                next_page = reply["meta"]["pagination"]["next_page"]
            except (KeyError, TypeError) as exc:
                raise HetznerApiError(f"{api.label}: GET /servers page {page}: unexpected reply, no {exc}") from None
            if next_page is not None and (not isinstance(next_page, int) or next_page <= page):
                raise HetznerApiError(f"{api.label}: GET /servers page {page}: next_page {next_page!r} does not advance")
            if isinstance(reply["meta"]["pagination"].get("total_entries"), int):
                totals.add(reply["meta"]["pagination"]["total_entries"])
            page = next_page
        # A server created or deleted between two pages shifts the rest: one missed, or listed
        # twice. Hetzner may leave total_entries null; what it gives must agree on every page.
        if len(totals) > 1 or (totals and totals != {len(servers)}) or len({s.get("id") for s in servers}) != len(servers):
            raise HetznerApiError(f"{api.label}: GET /servers returned {len(servers)} servers, but total_entries said "
                                  f"{' then '.join(map(str, sorted(totals, reverse=True)))}: the fleet changed while it "
                                  "was read; run again")
        self.display.vvv(f"hetzner_fleet: {api.label}: {len(servers)} servers in {api.requests} requests")
        return servers

    def _robot_servers(self):
        if not self.get_option("robot"):
            return []
        credentials = f"{self._secret('robot_user', 'robot')}:{self._secret('robot_password', 'robot')}"
        api = self._api("Hetzner Robot API", "robot_endpoint", "Basic " + base64.b64encode(credentials.encode()).decode(),
                        "robot_user and robot_password / HROBOT_API_USER and HROBOT_API_PASSWORD")
        # Robot answers 404 SERVER_NOT_FOUND for an account without dedicated servers.
        reply = api.get("/server", missing_ok_code="SERVER_NOT_FOUND") or []
        try:
            servers = [item["server"] for item in reply]
        except (KeyError, TypeError) as exc:
            raise HetznerApiError(f"{api.label}: GET /server: unexpected reply, no {exc}") from None
        statuses = self.get_option("robot_status")
        servers = [s for s in servers if not statuses or s.get("status") in statuses]
        adopted = []
        for server in servers:
            name = server.get("server_name") or f"robot-{server.get('server_number')}"
            if not any(fnmatch.fnmatchcase(key, pattern) for pattern in self.get_option("robot_adopt")
                       for key in (name, str(server.get("server_number")))):
                self.display.vv(f"hetzner_fleet: Robot server {name} is not in robot_adopt: left alone")
            elif server.get("cancelled"):
                self.display.warning(f"hetzner_fleet: Robot server {name} is cancelled (paid until "
                                     f"{server.get('paid_until', '?')}): not adopted; take it out of robot_adopt")
            else:
                adopted.append(server)
        return adopted

    # -- the inventory -----------------------------------------------------------------------
    def _populate(self, servers):
        hosts = [self._cloud_host(s) for s in servers["cloud"]] + [self._robot_host(s) for s in servers["robot"]]
        if self.get_option("locations"):
            hosts = [h for h in hosts if h["hetzner_location"] in self.get_option("locations")]
        seen = {}
        for host in hosts:
            name = host.pop("name")
            if name in seen:
                raise AnsibleParserError(f"hetzner_fleet: two servers are named {name!r}: "
                                         f"{seen[name]} and {host['hetzner_source']} {host['hetzner_id']}; rename one")
            seen[name] = f"{host['hetzner_source']} {host['hetzner_id']}"
            self._add(name, host)

    def _add(self, name, hostvars):
        hostvars["ansible_host"] = self._address(name, hostvars)
        self.inventory.add_host(name)
        for key, value in hostvars.items():
            self.inventory.set_variable(name, key, value)
        groups = ["hetzner_" + hostvars["hetzner_source"], "location_" + hostvars["hetzner_location"],
                  "product_" + hostvars["hetzner_product"]]
        groups += [hostvars["hetzner_layer"]] if hostvars["hetzner_layer"] else []
        for group in map(_group, groups + hostvars["hetzner_roles"]):
            self.inventory.add_group(group)
            self.inventory.add_child(group, name)
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), hostvars, name, strict)
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict)

    def _address(self, name, hostvars):
        candidates = {"ipv4": hostvars["hetzner_ipv4"], "ipv6": hostvars["hetzner_ipv6"],
                      "private": hostvars["hetzner_private_ipv4"]}
        choices = self.get_option("connect_via")
        for position, choice in enumerate(choices):
            if choice == "wireguard":
                # The mesh address comes from the vars plugin wireguard_mesh when the host is used,
                # so a host that joins the mesh in this run is reached there by the next play.
                later = [candidates[c] for c in choices[position + 1:] if candidates.get(c)]
                fallback = repr(later[0]) if later else (
                    f"undef(hint={f'{name} has no mesh address (connect_via {choices}) yet: no entry in the wireguard registry'!r})")
                return trust_as_template(f"{{{{ mesh_address | default({fallback}) }}}}")
            if candidates[choice]:
                return candidates[choice]
        raise AnsibleParserError(f"hetzner_fleet: {name} has no address for connect_via "
                                 f"{choices}; it has {[k for k, v in candidates.items() if v]}")

    @staticmethod
    def _labelled(labels):
        roles = [r for r in str(labels.get("role", "")).split(".") if r]
        return {"hetzner_labels": labels, "hetzner_layer": labels.get("layer"), "hetzner_roles": roles}

    def _cloud_host(self, server):
        try:
            public, server_type = server["public_net"], server["server_type"]
            private = server.get("private_net") or []
            network = self.get_option("cloud_network")
            private = [p for p in private if network is None or p.get("network") == network]
            ipv6_net = (public.get("ipv6") or {}).get("ip")
            family = re.match(r"[a-z]+", server_type["name"]).group(0)
            return {
                "name": server["name"],
                "hetzner_source": "cloud",
                "hetzner_id": server["id"],
                "hetzner_status": server["status"],
                **self._labelled(server.get("labels") or {}),
                "hetzner_ipv4": (public.get("ipv4") or {}).get("ip"),
                "hetzner_ipv6_network": ipv6_net,
                # Hetzner configures ::1 of the server's /64 on Cloud servers.
                "hetzner_ipv6": _host_address(ipv6_net, 1),
                "hetzner_private_ipv4": private[0]["ip"] if private else None,
                "hetzner_location": server["location"]["name"],
                "hetzner_datacenter": (server.get("datacenter") or {}).get("name"),
                "hetzner_product": server_type["name"],
                "hetzner_price_hourly": _location_price(server_type, server["location"]["name"]),
                "hetzner_cpu": {"model": CLOUD_CPU_FAMILIES.get(family), "cores": server_type["cores"],
                                "architecture": ARCHITECTURES.get(server_type["architecture"], server_type["architecture"])},
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise HetznerApiError(f"Hetzner Cloud API: server {server.get('id', '?')} lacks {exc}") from None

    def _robot_host(self, server):
        try:
            name = server.get("server_name") or f"robot-{server['server_number']}"
            extra = self.get_option("robot_hosts").get(name) or self.get_option("robot_hosts").get(
                str(server["server_number"])) or {}
            labels = {**self.get_option("robot_default_labels"), **extra.get("labels", {})}
            # Robot gives the server's IPv6 /64 without its mask.
            ipv6_net = f"{server['server_ipv6_net']}/64" if server.get("server_ipv6_net") else None
            datacenter = server["dc"].lower()
            return {
                "name": name,
                "hetzner_source": "robot",
                "hetzner_id": server["server_number"],
                "hetzner_status": server["status"],
                **self._labelled(labels),
                "hetzner_ipv4": server.get("server_ip"),
                "hetzner_ipv6_network": ipv6_net,
                # installimage configures ::2 of a dedicated server's /64.
                "hetzner_ipv6": _host_address(ipv6_net, 2),
                "hetzner_private_ipv4": extra.get("private_ipv4"),
                "hetzner_location": datacenter.split("-")[0],
                "hetzner_datacenter": datacenter,
                "hetzner_product": server["product"],
                "hetzner_price_hourly": None,
                "hetzner_cpu": {**{"model": None, "cores": None, "architecture": "x86_64"},
                                **ROBOT_CPUS.get(server["product"], {}),
                                **self.get_option("robot_cpus").get(server["product"], {})},
            }
        except (KeyError, TypeError, AttributeError) as exc:
            raise HetznerApiError(f"Hetzner Robot API: server {server.get('server_number', '?')} lacks {exc}") from None
