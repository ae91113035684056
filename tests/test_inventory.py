"""The production inventory (plugins/inventory/hetzner_fleet.py) run by `ansible-inventory` and
`ansible-playbook` against the fake Hetzner APIs: groups, host variables, filters, pagination,
retries, caching, and loud failures."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest
import yaml

from wrinklefree_lab.fake_hetzner import (CLOUD_TOKEN, ROBOT_PASSWORD, ROBOT_USER, FakeHetzner, make_cloud_servers,
                          make_robot_servers, robot_server)
from wrinklefree_lab.helpers import ROOT, env, run

# A WireGuard public key as `wg pubkey` prints it.
MESH_KEY = "m" * 42 + "A="
SECRETS = (CLOUD_TOKEN, ROBOT_PASSWORD, base64.b64encode(f"{ROBOT_USER}:{ROBOT_PASSWORD}".encode()).decode())


@pytest.fixture
def fake():
    server = FakeHetzner(make_cloud_servers(10), make_robot_servers(3)).start()
    yield server
    server.stop()


@pytest.fixture
def production(tmp_path):
    """A copy of inventories/production, so its cache lands in the test's directory, with the
    account's dedicated servers adopted as an operator lists them."""
    copy = shutil.copytree(ROOT / "inventories" / "production", tmp_path / "production")
    source = copy / "fleet.hetzner.yml"
    source.write_text(source.read_text().replace("robot_adopt: []", "robot_adopt: [ax-000, '100001', 'ax-00[2]']"))
    return copy


def fleet_env(fake: FakeHetzner, **extra: str) -> dict[str, str]:
    """The environment an operator sets for production, pointed at the fake."""
    return env(**{"HCLOUD_ENDPOINT": fake.cloud_url, "HROBOT_ENDPOINT": fake.robot_url, "HCLOUD_TOKEN": CLOUD_TOKEN,
                  "HROBOT_API_USER": ROBOT_USER, "HROBOT_API_PASSWORD": ROBOT_PASSWORD, **extra})


def inventory(source, fake, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    return run("ansible-inventory", "-i", source, *(args or ("--list",)), env=fleet_env(fake, **extra), check=check)


def listing(source, fake, **extra: str) -> dict:
    """`ansible-inventory --list`, with the marks of untrusted (API) values taken off."""
    return json.loads(inventory(source, fake, **extra).stdout,
                      object_hook=lambda d: d["__ansible_unsafe"] if list(d) == ["__ansible_unsafe"] else d)


def hostvars(listed: dict, host: str) -> dict:
    return listed["_meta"]["hostvars"][host]


def members(listed: dict, group: str) -> list[str]:
    return sorted(listed.get(group, {}).get("hosts", []))


def source_file(tmp_path, text: str):
    path = tmp_path / "fleet.hetzner.yml"
    path.write_text("plugin: wrinklefree.deployer.hetzner_fleet\n" + text)
    return path


def test_production_inventory_groups_the_whole_fleet(fake, production):
    listed = listing(production, fake)
    # Cloud servers 1..9 run (0 is off), every 4th is in the burst layer; robot servers join base.
    assert members(listed, "burst") == ["cloud-0004", "cloud-0008"]
    assert members(listed, "base") == sorted(
        [f"cloud-{i:04d}" for i in range(1, 10) if i % 4] + ["ax-000", "ax-001", "ax-002"])
    assert members(listed, "bitnet") == sorted(members(listed, "hetzner_cloud") + members(listed, "hetzner_robot"))
    assert members(listed, "wireguard") == ["ax-000", "ax-001", "ax-002"]
    assert members(listed, "location_hel1") == ["cloud-0002", "cloud-0005", "cloud-0008"]
    assert members(listed, "product_cax31") == ["cloud-0002", "cloud-0005", "cloud-0008"]
    assert members(listed, "product_ax41_nvme") == ["ax-000"]
    assert "cloud-0000" not in listed["_meta"]["hostvars"]


def test_hostvars_of_cloud_and_dedicated_servers(fake, production):
    listed = listing(production, fake)
    cloud = hostvars(listed, "cloud-0002")
    assert cloud["hetzner_ipv4"] == "198.18.0.3"
    # connect_via [wireguard, ipv4], and no mesh yet: the public address.
    assert values(resolved(production, fake, "ansible_host"))["cloud-0002"] == "198.18.0.3"
    assert cloud["hetzner_private_ipv4"] == "10.0.0.4"
    assert cloud["hetzner_ipv6"] == "2001:db8:2::1"
    assert cloud["hetzner_labels"] == {"layer": "base", "role": "bitnet"}
    assert cloud["hetzner_cpu"] == {"model": "Ampere Altra (shared vCPU)", "cores": 8, "architecture": "aarch64"}
    assert (cloud["hetzner_source"], cloud["hetzner_location"], cloud["hetzner_product"]) == ("cloud", "hel1", "cax31")
    # The API's net price per hour of cax31 in hel1 (the fake prices Helsinki 5 % lower).
    assert cloud["hetzner_price_hourly"] == round(12.49 * 0.95 / 730, 4)
    robot = hostvars(listed, "ax-002")
    assert robot["hetzner_source"] == "robot" and robot["hetzner_id"] == 100002
    assert robot["hetzner_cpu"] == {"model": "AMD Ryzen 9 7950X3D", "cores": 16, "architecture": "x86_64"}
    assert robot["hetzner_ipv6"] == "2001:db8:ffff:2::2"
    assert (robot["hetzner_location"], robot["hetzner_datacenter"]) == ("fsn1", "fsn1-dc3")
    assert robot["hetzner_roles"] == ["bitnet", "wireguard"]
    assert robot["hetzner_private_ipv4"] is None and robot["hetzner_price_hourly"] is None


def test_graph_shows_the_groups(fake, production):
    graph = inventory(production, fake, "--graph").stdout
    for group in ("@base:", "@burst:", "@bitnet:", "@hetzner_robot:", "@location_nbg1:", "@product_ccx33:"):
        assert group in graph


def test_robot_hosts_labels_private_address_and_cpu_override(fake, tmp_path):
    source = source_file(tmp_path, """cloud: false
robot_adopt: ["*"]
robot_hosts:
  ax-001: {labels: {role: bitnet.sky_controller}, private_ipv4: 10.0.9.2}
  "100002": {labels: {layer: burst}}
robot_cpus:
  AX41-NVMe: {model: Custom CPU}
""")
    listed = listing(source, fake)
    assert members(listed, "sky_controller") == ["ax-001"]
    assert hostvars(listed, "ax-001")["hetzner_private_ipv4"] == "10.0.9.2"
    assert members(listed, "burst") == ["ax-002"]
    assert hostvars(listed, "ax-000")["hetzner_cpu"]["model"] == "Custom CPU"
    assert fake.requests["cloud /v1/servers"] == 0


@pytest.mark.parametrize("options,expected", [
    ("cloud_label_selector: layer=burst\nrobot: false\n", ["cloud-0004", "cloud-0008"]),
    ("cloud_status: []\nrobot: false\ncloud_label_selector: layer=burst\n", ["cloud-0000", "cloud-0004", "cloud-0008"]),
    ("locations: [hel1]\n", ["cloud-0002", "cloud-0005", "cloud-0008"]),
    ("cloud: false\nrobot_status: [in process]\n", []),
])
def test_filters(fake, tmp_path, options, expected):
    listed = listing(source_file(tmp_path, options), fake)
    assert sorted(listed["_meta"]["hostvars"]) == expected


def test_constructed_groups_and_compose(fake, tmp_path):
    source = source_file(tmp_path, """robot: false
keyed_groups:
  - {key: hetzner_cpu.architecture, prefix: arch}
groups:
  big: hetzner_cpu.cores >= 8
compose:
  bitnet_threads: hetzner_cpu.cores
""")
    listed = listing(source, fake)
    assert members(listed, "arch_aarch64") == ["cloud-0002", "cloud-0005", "cloud-0008"]
    assert "cloud-0003" not in members(listed, "big")
    assert hostvars(listed, "cloud-0001")["bitnet_threads"] == 8


def test_dedicated_servers_join_only_when_adopted_and_never_cancelled(tmp_path):
    servers = make_robot_servers(4)
    servers[3]["cancelled"] = True
    fake = FakeHetzner(robot_servers=servers).start()
    try:
        assert listing(source_file(tmp_path, "cloud: false\n"), fake)["_meta"]["hostvars"] == {}
        result = run("ansible-inventory", "-i", source_file(tmp_path, "cloud: false\nrobot_adopt: [ax-000, '100002', 'ax-00[3]']\n"),
                     "--list", env=fleet_env(fake), stderr=subprocess.PIPE)
        listed = json.loads(result.stdout)
    finally:
        fake.stop()
    assert sorted(listed["_meta"]["hostvars"]) == ["ax-000", "ax-002"]
    assert "Robot server ax-003 is cancelled (paid until 2027-01-31): not adopted" in " ".join(result.stderr.split())


def test_pagination_over_1000_servers(tmp_path):
    big = FakeHetzner(make_cloud_servers(1000), make_robot_servers(200)).start()
    try:
        listed = listing(source_file(tmp_path, "cloud_status: []\nrobot_adopt: ['*']\n"), big)
    finally:
        big.stop()
    assert len(listed["_meta"]["hostvars"]) == 1200
    assert big.requests["cloud /v1/servers"] == 20  # 50 per page
    assert big.requests["robot /robot/server"] == 1


def test_a_server_deleted_while_paging_fails_instead_of_going_missing(tmp_path):
    """60 servers in two pages; one deleted before page 2: page 2 shifts by one, so the 51st
    server is never listed. total_entries (60, then 59) gives it away."""
    fake = FakeHetzner(make_cloud_servers(60)).start()
    try:
        source = source_file(tmp_path, "robot: false\ncloud_status: []\n")
        assert len(listing(source, fake)["_meta"]["hostvars"]) == 60
        fake.requests.clear()
        fake.inject("cloud", "ok")  # page 1 as it is
        fake.inject("cloud", "deleted")
        result = inventory(source, fake, "--list", "--flush-cache", check=False)
    finally:
        fake.stop()
    assert result.returncode != 0
    assert "returned 59 servers, but total_entries said 60 then 59: the fleet changed while it was read" in result.stdout


@pytest.mark.parametrize("endpoint,message", [
    ("http://api.hetzner.example/v1", "cloud_endpoint must be an https:// URL (http:// only on loopback"),
    ("ftp://127.0.0.1/v1", "cloud_endpoint must be an https:// URL"),
])
def test_api_endpoints_must_be_https(fake, tmp_path, endpoint, message):
    result = inventory(source_file(tmp_path, "robot: false\n"), fake, check=False, HCLOUD_ENDPOINT=endpoint)
    assert result.returncode != 0 and message in result.stdout
    assert sum(fake.requests.values()) == 0


def test_a_redirect_is_not_followed_with_the_credentials(tmp_path):
    """An endpoint that redirects (a moved API, a captive portal) gets no second request: the
    token would go wherever the redirect points."""
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        seen = []

        def do_GET(self):  # noqa: N802 (http.server's name)
            Redirect.seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(301)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/elsewhere")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run("ansible-inventory", "-i", source_file(tmp_path, "robot: false\n"), "--list", check=False,
                     env=env(HCLOUD_ENDPOINT=f"http://127.0.0.1:{server.server_port}/v1", HCLOUD_TOKEN=CLOUD_TOKEN))
    finally:
        server.shutdown()
    assert result.returncode != 0 and "HTTP 301: a redirect, not followed" in result.stdout
    assert [path for path, _ in Redirect.seen] == ["/v1/servers?per_page=50&status=running&page=1"]


def test_rate_limited_request_is_retried(fake, tmp_path):
    fake.inject("cloud", "429", 2)
    fake.inject("robot", "502", 1)
    listed = listing(source_file(tmp_path, "robot_adopt: ['*']\n"), fake)
    assert len(listed["_meta"]["hostvars"]) == 12
    assert fake.requests["cloud /v1/servers"] == 3
    assert fake.requests["robot /robot/server"] == 2


def test_exhausted_cloud_quota_fails_with_the_reset_time(tmp_path):
    limited = FakeHetzner(make_cloud_servers(100), cloud_limit=1).start()
    try:
        result = inventory(source_file(tmp_path, "robot: false\nretry_max_wait: 2\n"), limited, check=False)
    finally:
        limited.stop()
    assert result.returncode != 0
    assert "Hetzner Cloud API" in result.stdout and "rate_limit_exceeded" in result.stdout
    assert "rate limit 1 requests/hour, fully replenished at" in result.stdout


def test_robot_rate_limit_fails_with_its_quota(tmp_path):
    limited = FakeHetzner(robot_servers=make_robot_servers(3), robot_limit=0).start()
    try:
        result = inventory(source_file(tmp_path, "cloud: false\nretry_max_wait: 1\n"), limited, check=False)
    finally:
        limited.stop()
    assert result.returncode != 0
    assert "Hetzner Robot API" in result.stdout
    assert "Robot allows 0 requests per 3600 s" in result.stdout


def test_account_without_dedicated_servers_is_an_empty_robot_fleet(tmp_path):
    cloud_only = FakeHetzner(make_cloud_servers(3)).start()
    try:
        listed = listing(source_file(tmp_path, ""), cloud_only)
    finally:
        cloud_only.stop()
    assert sorted(listed["_meta"]["hostvars"]) == ["cloud-0001", "cloud-0002"]


@pytest.mark.parametrize("extra,message", [
    ({"HCLOUD_TOKEN": "wrong-token"},
     "Hetzner Cloud API: GET /servers page 1 failed: HTTP 401 unauthorized"),
    ({"HROBOT_API_PASSWORD": "wrong-password"}, "Hetzner Robot API: GET /server failed: HTTP 401 UNAUTHORIZED"),
    ({"HCLOUD_TOKEN": ""}, "option 'cloud_token' is required when 'cloud' is true"),
    ({"HROBOT_API_USER": ""}, "option 'robot_user' is required when 'robot' is true"),
])
def test_bad_credentials_fail_loudly(fake, production, extra, message):
    result = inventory(production, fake, check=False, **extra)
    assert result.returncode != 0
    assert message in result.stdout
    assert "Completely failed to parse inventory source" in result.stdout


@pytest.mark.parametrize("api,fault,message", [
    ("cloud", "malformed", "Hetzner Cloud API: GET /servers page 1 returned malformed JSON"),
    ("robot", "malformed", "Hetzner Robot API: GET /server returned malformed JSON"),
    ("cloud", "500", "still failing after 2 attempts and 1 s of waiting (retry_max_wait 2 s): HTTP 500 service_error"),
])
def test_broken_replies_fail_loudly(fake, tmp_path, api, fault, message):
    fake.inject(api, fault, 10)
    result = inventory(source_file(tmp_path, "retry_max_wait: 2\n"), fake, check=False)
    assert result.returncode != 0
    assert message in result.stdout


def test_unreachable_api_fails_loudly(fake, tmp_path):
    fake.stop()
    result = inventory(source_file(tmp_path, "retry_max_wait: 1\n"), fake, check=False)
    assert result.returncode != 0
    assert "Hetzner Cloud API: GET /servers page 1 still failing" in result.stdout
    assert f"cannot reach {fake.cloud_url}" in result.stdout


def test_playbook_fails_too_when_discovery_fails(fake, production):
    result = run("ansible-playbook", "-i", production, "playbooks/site.yml",
                 env=fleet_env(fake, HCLOUD_TOKEN="wrong-token"), check=False)
    assert result.returncode != 0
    assert "HTTP 401 unauthorized" in result.stdout


def test_duplicate_names_across_apis_fail(tmp_path):
    clash = FakeHetzner(make_cloud_servers(2), [robot_server(0, name="cloud-0001", ip="198.18.9.9")]).start()
    try:
        result = inventory(source_file(tmp_path, "robot_adopt: [cloud-0001]\n"), clash, check=False)
    finally:
        clash.stop()
    assert result.returncode != 0
    assert "two servers are named 'cloud-0001': cloud 1001 and robot 100000" in result.stdout


def test_cache_hit_sends_no_request(fake, production):
    first = listing(production, fake)
    sent = sum(fake.requests.values())
    assert sent == 2
    assert listing(production, fake) == first
    assert sum(fake.requests.values()) == sent
    # --flush-cache asks the APIs again; so does a changed query.
    inventory(production, fake, "--list", "--flush-cache")
    assert sum(fake.requests.values()) == 2 * sent
    text = (production / "fleet.hetzner.yml").read_text()
    (production / "fleet.hetzner.yml").write_text(text.replace("layer in (base,burst)", "layer=base"))
    assert "cloud-0004" not in listing(production, fake)["_meta"]["hostvars"]
    assert sum(fake.requests.values()) == 3 * sent


def test_cache_is_keyed_on_the_account(fake, production):
    """Another account's credentials within cache_timeout ask the API (which refuses them here),
    never read the cached fleet of the first."""
    listing(production, fake)
    sent = sum(fake.requests.values())
    for other in ({"HCLOUD_TOKEN": "staging-token-0123456789abcdef"}, {"HROBOT_API_USER": "#ws+staging"},
                  {"HROBOT_API_PASSWORD": "staging-password"}):
        result = inventory(production, fake, "--list", check=False, **other)
        assert result.returncode != 0 and "401" in result.stdout, other
        assert sum(fake.requests.values()) > sent, other
        sent = sum(fake.requests.values())
    # The first account still hits its own cache.
    listing(production, fake)
    assert sum(fake.requests.values()) == sent


def test_cache_expires_after_its_timeout(fake, production):
    text = (production / "fleet.hetzner.yml").read_text()
    (production / "fleet.hetzner.yml").write_text(text.replace("cache_timeout: 600", "cache_timeout: 1"))
    listing(production, fake)
    run("sleep", "2")
    listing(production, fake)
    assert fake.requests["cloud /v1/servers"] == 2


def resolved(source, fake, variable: str, check: bool = True, hosts: str = "all") -> subprocess.CompletedProcess:
    """Each host's ``variable`` as a play sees it (templates rendered, vars plugins applied), one
    ``resolved HOST=VALUE`` line per host."""
    return run("ansible", "-i", source, hosts, "-c", "local", "-m", "ansible.builtin.debug",
               "-a", json.dumps({"msg": f"resolved {{{{ inventory_hostname }}}}={{{{ {variable} }}}}"}),
               env=fleet_env(fake), check=check)


def values(result: subprocess.CompletedProcess) -> dict:
    return dict(re.findall(r"msg: resolved (\S+)=(\S+)", result.stdout))


@pytest.mark.parametrize("connect_via,expected", [
    ("[wireguard, ipv4]", {"cloud-0001": "10.100.0.1", "cloud-0002": "198.18.0.3"}),
    ("[private]", {"cloud-0001": "10.0.0.3", "cloud-0002": "10.0.0.4"}),
    ("[ipv6]", {"cloud-0001": "2001:db8:1::1", "cloud-0002": "2001:db8:2::1"}),
])
def test_connect_via(fake, tmp_path, connect_via, expected):
    # The wireguard role's registry, as the vars plugin wireguard_mesh reads it.
    (tmp_path / "wireguard-addresses.yml").write_text(f"cloud-0001: {{address: 10.100.0.1, public_key: {MESH_KEY}}}\n")
    source = source_file(tmp_path, f"robot: false\nlocations: [nbg1, hel1]\nconnect_via: {connect_via}\n")
    listed = values(resolved(source, fake, "ansible_host"))
    assert {h: listed[h] for h in expected} == expected


def test_a_host_joins_the_mesh_address_when_the_registry_names_it(fake, tmp_path):
    """The registry is read when the host is used, not when the inventory was parsed."""
    source = source_file(tmp_path, "robot: false\nlocations: [nbg1]\nconnect_via: [wireguard]\n")
    before = resolved(source, fake, "ansible_host", check=False)
    assert before.returncode != 0
    assert "cloud-0001 has no mesh address (connect_via ['wireguard']) yet" in before.stdout
    (tmp_path / "wireguard-addresses.yml").write_text(f"cloud-0001: {{address: 10.100.0.7, public_key: {MESH_KEY}, interface: wg1}}\n")
    assert values(resolved(source, fake, "mesh_interface", hosts="cloud-0001")) == {"cloud-0001": "wg1"}
    assert values(resolved(source, fake, "ansible_host", hosts="cloud-0001")) == {"cloud-0001": "10.100.0.7"}


def test_a_malformed_registry_is_an_error_naming_it(fake, tmp_path):
    (tmp_path / "wireguard-addresses.yml").write_text("- not a mapping\n")
    result = resolved(source_file(tmp_path, "robot: false\nlocations: [nbg1]\n"), fake, "mesh_address", check=False)
    assert result.returncode != 0
    assert "wireguard-addresses.yml must map host names to mesh entries" in result.stdout


def test_a_doctored_registry_entry_is_an_error_naming_its_host(fake, tmp_path):
    """A key carrying a wg-quick directive never becomes a host variable that a template renders."""
    (tmp_path / "wireguard-addresses.yml").write_text(yaml.safe_dump(
        {"cloud-0001": {"address": "10.100.0.1", "public_key": MESH_KEY + "\n[Interface]\nPostUp = id"}}))
    result = resolved(source_file(tmp_path, "robot: false\nlocations: [nbg1]\n"), fake, "mesh_address", check=False)
    assert result.returncode != 0
    assert "the entry of cloud-0001 is refused: public_key" in result.stdout, result.stdout[-2000:]


def test_unknown_connect_via_is_refused(fake, tmp_path):
    result = inventory(source_file(tmp_path, "connect_via: [public]\n"), fake, check=False)
    assert result.returncode != 0
    assert "connect_via" in result.stdout and "ipv4, ipv6, private, wireguard" in result.stdout


def test_vault_encrypted_token(fake, tmp_path):
    password = tmp_path / "vault-password"
    password.write_text("lab-vault-password\n")
    encrypted = run("ansible-vault", "encrypt_string", "--vault-password-file", password, CLOUD_TOKEN,
                    "--name", "cloud_token").stdout
    source = source_file(tmp_path, "robot: false\n" + encrypted[encrypted.index("cloud_token"):])
    listed = listing(source, fake, HCLOUD_TOKEN="", ANSIBLE_VAULT_PASSWORD_FILE=str(password))
    assert len(listed["_meta"]["hostvars"]) == 9


def test_secrets_never_appear_in_output_or_cache(fake, production):
    verbose = inventory(production, fake, "--list", "-vvvv").stdout
    failed = inventory(production, fake, "--list", "-vvvv", check=False, HROBOT_API_USER="#ws+other").stdout
    cached = "".join(p.read_text() for p in (production / ".cache").iterdir())
    for secret in SECRETS:
        assert secret not in verbose and secret not in failed and secret not in cached
