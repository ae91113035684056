"""The fake Hetzner APIs are only worth testing against if real clients accept them: these tests
drive the fake with the official hcloud library and the bundled hetzner.hcloud inventory plugin."""

from __future__ import annotations

import json
import sys

import pytest
import requests
from hcloud import APIException, Client
from hcloud.actions import ActionFailedException
from hcloud.firewalls import FirewallRule
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType

from wrinklefree_lab.fake_hetzner import (CLOUD_TOKEN, ROBOT_PASSWORD, ROBOT_USER, SSH_KEY, FakeHetzner, HostFactory,
                                          _selector_matches, make_cloud_servers, make_robot_servers)
from wrinklefree_lab.helpers import env, run


@pytest.fixture
def fake():
    server = FakeHetzner(make_cloud_servers(1000), make_robot_servers(200)).start()
    yield server
    server.stop()


def test_hcloud_library_pages_through_1000_servers(fake):
    servers = Client(token=CLOUD_TOKEN, api_endpoint=fake.cloud_url).servers.get_all()
    assert len(servers) == 1000
    assert len({s.id for s in servers}) == 1000
    assert fake.requests["cloud /v1/servers"] == 20  # 50 per page
    first = servers[0]
    assert first.server_type.name == "cx22"
    assert first.location.name == "fsn1"
    assert first.private_net[0].ip == "10.0.0.2"


def test_label_selector_and_status_filters(fake):
    client = Client(token=CLOUD_TOKEN, api_endpoint=fake.cloud_url)
    burst = client.servers.get_all(label_selector="layer=burst")
    assert len(burst) == 250 and all(s.labels["layer"] == "burst" for s in burst)
    running = client.servers.get_all(status=["running"])
    assert len(running) == 900


@pytest.mark.parametrize("selector,labels,expected", [
    ("layer=base", {"layer": "base"}, True),
    ("layer!=base", {"layer": "base"}, False),
    ("role", {"role": "x"}, True),
    ("!role", {"role": "x"}, False),
    ("layer in (base,burst),role", {"layer": "burst", "role": "bitnet"}, True),
    ("layer notin (base,burst)", {"layer": "burst"}, False),
])
def test_selector_grammar(selector, labels, expected):
    assert _selector_matches(selector, labels) is expected


def test_bad_token_is_an_unauthorized_error(fake):
    with pytest.raises(APIException) as error:
        Client(token="wrong", api_endpoint=fake.cloud_url).servers.get_all()
    assert error.value.code == "unauthorized"


def test_429_carries_rate_limit_headers_and_library_recovers(fake):
    fake.inject("cloud", "429")
    response = requests.get(fake.cloud_url + "/servers", headers={"Authorization": f"Bearer {CLOUD_TOKEN}"},
                            timeout=5)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) > 0
    fake.inject("cloud", "429")
    assert len(Client(token=CLOUD_TOKEN, api_endpoint=fake.cloud_url).servers.get_all()) == 1000


def test_hourly_quota_is_enforced():
    fake = FakeHetzner(make_cloud_servers(1), make_robot_servers(1), cloud_limit=2, robot_limit=1).start()
    try:
        auth = {"Authorization": f"Bearer {CLOUD_TOKEN}"}
        codes = [requests.get(fake.cloud_url + "/servers", headers=auth, timeout=5).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        robot = [requests.get(fake.robot_url + "/server", auth=(ROBOT_USER, ROBOT_PASSWORD), timeout=5)
                 for _ in range(2)]
        assert [r.status_code for r in robot] == [200, 403]
        assert robot[1].json()["error"] == {"status": 403, "code": "RATE_LIMIT_EXCEEDED",
                                            "message": "Rate limit exceeded", "max_request": 1, "interval": 3600}
    finally:
        fake.stop()


def test_malformed_and_5xx_faults(fake):
    fake.inject("cloud", "malformed")
    with pytest.raises(APIException):
        Client(token=CLOUD_TOKEN, api_endpoint=fake.cloud_url).servers.get_all()
    fake.inject("robot", "500")
    response = requests.get(fake.robot_url + "/server", auth=(ROBOT_USER, ROBOT_PASSWORD), timeout=5)
    assert response.status_code == 500 and response.json()["error"]["code"] == "INTERNAL_ERROR"


def test_faults_from_a_file_replace_the_queue(tmp_path):
    """How a test reaches a fake serving in its own process (the lab's)."""
    faults = tmp_path / "faults.json"
    server = FakeHetzner(make_cloud_servers(2), faults_file=str(faults)).start()
    try:
        def status() -> int:
            return requests.get(server.cloud_url + "/servers", headers={"Authorization": f"Bearer {CLOUD_TOKEN}"},
                                timeout=5).status_code
        faults.write_text(json.dumps({"cloud": ["502", "502", "502"]}))
        assert [status(), status()] == [502, 502]
        assert not faults.exists()
        faults.write_text(json.dumps({"cloud": []}))
        assert status() == 200
    finally:
        server.stop()


def test_robot_lists_servers_with_basic_auth(fake):
    assert requests.get(fake.robot_url + "/server", auth=("x", "y"), timeout=5).status_code == 401
    servers = requests.get(fake.robot_url + "/server", auth=(ROBOT_USER, ROBOT_PASSWORD), timeout=5).json()
    assert len(servers) == 200
    assert servers[0]["server"]["product"] == "AX41-NVMe"


def test_bundled_hcloud_inventory_plugin_reads_the_fake(fake, tmp_path):
    """The bundled plugin, pointed at the fake through api_endpoint, builds groups from labels."""
    source = tmp_path / "fleet.hcloud.yml"
    source.write_text(
        "plugin: hetzner.hcloud.hcloud\n"
        f"api_endpoint: {fake.cloud_url}\n"
        "label_selector: layer=burst\n"
        "keyed_groups:\n  - key: hcloud_labels.role\n    prefix: role\n"
        "  - key: hcloud_location\n    prefix: location\n"
    )
    out = run("ansible-inventory", "-i", source, "--list", env=env(HCLOUD_TOKEN=CLOUD_TOKEN)).stdout
    inventory = json.loads(out)
    assert len(inventory["role_bitnet"]["hosts"]) == 250
    assert set(inventory["location_fsn1"]["hosts"]) < set(inventory["role_bitnet"]["hosts"])
    host = inventory["_meta"]["hostvars"]["cloud-0000"]
    # ansible-inventory marks values that came from an API as unsafe (not to be templated).
    plain = {k: v.get("__ansible_unsafe", v) if isinstance(v, dict) else v for k, v in host.items()}
    assert plain["ansible_host"] == "198.18.0.1"
    assert plain["hcloud_server_type"] == "cx22"


# -- the writable project (fake_hcloud), through the official client ----------------------------

@pytest.fixture
def project():
    created, deleted = [], []
    server = FakeHetzner(server_limit=3, action_seconds=0.2,
                         on_create=lambda s, user_data, _keys: created.append((s["name"], user_data)) or {"ipv4": "192.0.2.7"},
                         on_delete=lambda s: deleted.append(s["name"])).start()
    yield server, Client(token=CLOUD_TOKEN, api_endpoint=server.cloud_url, poll_interval=0.1), created, deleted
    server.stop()


def test_a_reloaded_fleet_file_keeps_the_servers_created_through_the_api(tmp_path):
    """The lab re-lists its own hosts (Lab.list) while provision.yml's servers stay in the project."""
    fleet = tmp_path / "fleet.json"
    given = {"name": "lab-1", "ipv4": "192.0.2.1", "private_ip": "10.0.0.1", "labels": {}}
    fleet.write_text(json.dumps({"cloud": [given, dict(given, name="lab-2")]}))
    fake = FakeHetzner(fleet_file=str(fleet), action_seconds=0.05).start()
    try:
        client = Client(token=CLOUD_TOKEN, api_endpoint=fake.cloud_url, poll_interval=0.05)
        client.servers.create("made-1", server_type=ServerType(name="cx22"), image=Image(name="debian-12")).action.wait_until_finished()
        assert sorted(s.name for s in client.servers.get_all()) == ["lab-1", "lab-2", "made-1"]
        fleet.write_text(json.dumps({"cloud": [given]}))
        assert sorted(s.name for s in client.servers.get_all()) == ["lab-1", "made-1"]
    finally:
        fake.stop()


def test_servers_are_created_with_their_keys_and_labels_and_deleted_after_their_actions(project):
    fake, client, created, deleted = project
    key = client.ssh_keys.create(name="admin", public_key=SSH_KEY, labels={"managed-by": "wrinklefree"})
    response = client.servers.create("base-1", server_type=ServerType(name="cx22"), image=Image(name="debian-12"),
                                     location=Location(name="nbg1"), ssh_keys=[key], labels={"layer": "base"},
                                     user_data="#cloud-config\n")
    assert response.server.status == "initializing" and response.root_password is None
    response.action.wait_until_finished()
    server = client.servers.get_by_name("base-1")
    assert server.status == "running" and server.labels == {"layer": "base"} and server.location.name == "nbg1"
    assert server.public_net.ipv4.ip == "192.0.2.7" and created == [("base-1", "#cloud-config\n")]
    client.servers.delete(server).wait_until_finished()
    assert client.servers.get_by_name("base-1") is None and deleted == ["base-1"]
    assert fake.requests["cloud POST /v1/servers"] == 1


@pytest.mark.parametrize("change,code,field", [
    ({"server_type": "cx99"}, "invalid_input", "server_type"),
    ({"location": "mars1"}, "invalid_input", "location"),
    ({"image": "debian-7"}, "invalid_input", "image"),
    ({"server_type": "cax31", "image": 161547269}, "invalid_input", "image"),  # an x86 image on ARM
    ({"name": "not a hostname"}, "invalid_input", "name"),
    ({"labels": {"bad key!": "x"}}, "invalid_input", "labels"),
    ({"ssh_keys": ["nobody"]}, "invalid_input", "ssh_keys"),
])
def test_the_api_refuses_what_it_cannot_create(project, change, code, field):
    fake, client, created, _ = project
    body = {"name": "base-1", "server_type": "cx22", "image": "debian-12", "location": "fsn1", **change}
    with pytest.raises(APIException) as refused:
        client.request(url="/servers", method="POST", json=body)
    assert refused.value.code == code and refused.value.details["fields"][0]["name"] == field
    assert fake.project.servers == [] and created == []


def test_names_are_unique_and_the_project_has_a_server_limit(project):
    fake, client, _, _ = project
    body = {"server_type": "cax31", "image": "debian-12"}
    for name in ("a", "b", "c"):
        client.request(url="/servers", method="POST", json={"name": name, **body})
    with pytest.raises(APIException) as refused:
        client.request(url="/servers", method="POST", json={"name": "a", **body})
    assert refused.value.code == "uniqueness_error"
    with pytest.raises(APIException) as refused:
        client.request(url="/servers", method="POST", json={"name": "d", **body})
    assert refused.value.code == "resource_limit_exceeded"
    with pytest.raises(APIException) as refused:
        client.ssh_keys.create(name="k", public_key="not a key")
    assert refused.value.code == "invalid_input"
    client.ssh_keys.create(name="k", public_key=SSH_KEY)
    with pytest.raises(APIException) as refused:
        client.ssh_keys.create(name="k2", public_key=SSH_KEY)
    assert refused.value.code == "uniqueness_error"  # the same key under another name


def test_delete_protection_and_resources_in_use_are_honoured(project):
    fake, client, _, deleted = project
    firewall = client.firewalls.create("fleet", rules=[FirewallRule(direction="in", protocol="tcp", port="22",
                                                                    source_ips=["0.0.0.0/0", "::/0"])]).firewall
    group = client.placement_groups.create("fleet", type="spread").placement_group
    network = client.networks.create("fleet-net", ip_range="10.1.0.0/16")
    response = client.servers.create("base-1", server_type=ServerType(name="cx22"), image=Image(name="debian-12"),
                                     firewalls=[firewall], placement_group=group, networks=[network])
    response.action.wait_until_finished()
    server = client.servers.get_by_id(response.server.id)
    server.change_protection(delete=True).wait_until_finished()
    with pytest.raises(APIException) as refused:
        server.delete()
    assert refused.value.code == "protected" and deleted == []
    for resource in (firewall, group, network):
        with pytest.raises(APIException) as refused:
            resource.delete()
        assert refused.value.code == "resource_in_use"
    with pytest.raises(APIException) as refused:
        server.change_type(ServerType(name="ccx33"), upgrade_disk=False)
    assert refused.value.code == "server_not_stopped"
    server.change_protection(delete=False).wait_until_finished()
    server.delete().wait_until_finished()
    assert firewall.delete() and group.delete() and network.delete()
    assert [n.name for n in client.networks.get_all()] == ["fleet"]  # the discovery fake's own


def test_prices_per_location_and_injected_api_errors(project):
    fake, client, _, _ = project
    types = {t.name: t for t in client.server_types.get_all()}
    prices = {p["location"]: p for p in types["cx22"].prices}
    assert sorted(prices) == ["fsn1", "hel1", "nbg1"] and float(prices["fsn1"]["price_monthly"]["net"]) == 3.79
    fake.inject("cloud", "422:resource_limit_exceeded")
    with pytest.raises(APIException) as refused:
        client.request(url="/servers", method="POST", json={"name": "x", "server_type": "cx22", "image": "debian-12"})
    assert refused.value.code == "resource_limit_exceeded" and fake.project.servers == []


# -- the lab's host factory (bin/wf lab: a server created through the API becomes a lab host) ----

RECORDER = """import json, sys
spec = json.load(open(sys.argv[-1].lstrip("@")))
server = spec["lab_server"]
if server.get("user_data"):
    server["user_data"] = open(server["user_data"]).read()
with open(sys.argv[1], "a") as log:
    log.write(json.dumps(spec) + "\\n")
if server["name"].startswith("broken"):
    print("TASK [Lab | host]\\nfatal: the container did not start")
    sys.exit(2)
"""


@pytest.fixture
def factory(tmp_path):
    """A fake whose host factory runs a recorder (in place of playbooks/lab/server.yml) that logs
    each request; `log()` reads what it was asked."""
    script, log = tmp_path / "recorder.py", tmp_path / "requests.jsonl"
    script.write_text(RECORDER)
    (tmp_path / "factory.json").write_text(json.dumps({
        "command": [sys.executable, str(script), str(log)], "cwd": str(tmp_path), "vars": {"lab_network": "wf-test"},
        "addresses": ["10.213.9.11", "10.213.9.12", "10.213.9.13"]}))
    fake = FakeHetzner(server_limit=5, action_seconds=0.05)
    maker = HostFactory(str(tmp_path), fake)
    fake.project.on_create, fake.project.on_delete = maker.create, maker.delete
    fake.start()
    yield fake, Client(token=CLOUD_TOKEN, api_endpoint=fake.cloud_url, poll_interval=0.1), \
        lambda: [json.loads(line) for line in log.read_text().splitlines()]
    fake.stop()


def test_the_host_factory_makes_a_host_per_server_and_removes_it_with_the_server(factory):
    fake, client, log = factory
    key = client.ssh_keys.create(name="admin", public_key=SSH_KEY)
    made = [client.servers.create(name, server_type=ServerType(name="cx22"), image=Image(name="debian-12"),
                                  ssh_keys=[key], labels={"layer": "base"}, user_data=f"#cloud-config\n# {name}\n")
            for name in ("lab-1", "lab-2")]
    for response in made:
        response.action.wait_until_finished()
    asked = {entry["lab_server"]["name"]: entry for entry in log()}
    assert sorted(asked) == ["lab-1", "lab-2"]
    for name, entry in asked.items():
        server = client.servers.get_by_name(name)
        assert entry["lab_network"] == "wf-test" and entry["lab_server"]["state"] == "present"
        assert entry["lab_server"]["public_keys"] == [SSH_KEY] and entry["lab_server"]["labels"] == {"layer": "base"}
        # The user data reached the factory's playbook in a file (gone since).
        assert entry["lab_server"]["user_data"] == f"#cloud-config\n# {name}\n"
        assert server.status == "running" and server.public_net.ipv4.ip == entry["lab_server"]["address"]
    assert sorted(e["lab_server"]["address"] for e in asked.values()) == ["10.213.9.11", "10.213.9.12"]

    client.servers.delete(client.servers.get_by_name("lab-1")).wait_until_finished()
    assert log()[-1]["lab_server"] | {"user_data": None} == {
        "name": "lab-1", "labels": {"layer": "base"}, "address": asked["lab-1"]["lab_server"]["address"], "state": "absent",
        "public_keys": [], "user_data": None}
    # A freed address is not handed out again while a fresh one is left.
    client.servers.create("lab-3", server_type=ServerType(name="cx22"), image=Image(name="debian-12")).action.wait_until_finished()
    assert client.servers.get_by_name("lab-3").public_net.ipv4.ip == "10.213.9.13"


def test_a_host_the_factory_cannot_make_fails_the_action_with_its_reason(factory):
    _fake, client, _log = factory
    response = client.servers.create("broken-1", server_type=ServerType(name="cx22"), image=Image(name="debian-12"))
    with pytest.raises(ActionFailedException) as failure:
        response.action.wait_until_finished()
    assert "the lab host broken-1 was not present: TASK [Lab | host] fatal: the container did not start" in str(failure.value.action.error)
