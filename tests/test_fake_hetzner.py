"""The fake Hetzner APIs are only worth testing against if real clients accept them: these tests
drive the fake with the official hcloud library and the bundled hetzner.hcloud inventory plugin."""

from __future__ import annotations

import json

import pytest
import requests
from hcloud import APIException, Client

from wrinklefree_lab.fake_hetzner import (CLOUD_TOKEN, ROBOT_PASSWORD, ROBOT_USER, FakeHetzner, _selector_matches,
                          make_cloud_servers, make_robot_servers)
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
