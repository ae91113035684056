"""playbooks/provision.yml (roles/provision) against the fake Cloud API: the declared fleet made
to exist, check mode as the plan, safe scale-down, bad input refused before any write, and API
faults survived or reported."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hcloud import Client

from wrinklefree_lab.fake_hetzner import CLOUD_TOKEN, SSH_KEY, FakeHetzner
from wrinklefree_lab.helpers import env, run

BASE = {"name": "base", "count": 3, "server_type": "cx22", "locations": ["fsn1", "nbg1"],
        "labels": {"role": "bitnet.wireguard"}}


@pytest.fixture
def cloud():
    """The fake Cloud API with an empty project; `fake.user_data` is what each new server was given."""
    fake = FakeHetzner(server_limit=10, action_seconds=0.05,
                       on_create=lambda server, user_data, _keys: fake.user_data.update({server["name"]: user_data})).start()
    fake.user_data = {}
    yield fake, Client(token=CLOUD_TOKEN, api_endpoint=fake.cloud_url)
    fake.stop()


def provision(fake, tmp_path, *args, layers=(BASE,), **extravars):
    """ansible-playbook playbooks/provision.yml with the declaration as extra vars; the run's
    return code and output."""
    declared = {"provision_hcloud_endpoint": fake.cloud_url, "provision_hcloud_token": CLOUD_TOKEN,
                "provision_known_hosts": str(tmp_path / "known_hosts"),
                "provision_ssh_keys": [{"name": "admin", "public_key": SSH_KEY}], "provision_layers": list(layers),
                **extravars}
    path = tmp_path / "provision.json"
    path.write_text(json.dumps(declared))
    # A temporary directory of the run's own, so that what it leaves behind is seen apart from
    # other runs of the suite's workers.
    (tmp_path / "tmp").mkdir(exist_ok=True)
    proc = run("ansible-playbook", "-i", "inventories/controller", "playbooks/provision.yml", f"-e@{path}", *args,
               check=False, env=env(TMPDIR=str(tmp_path / "tmp")))
    return proc.returncode, proc.stdout


def changed(output: str) -> int:
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", output).group(1))


def writes(fake) -> dict:
    return {k: v for k, v in fake.requests.items() if k.startswith(("cloud POST", "cloud DELETE"))}


def test_an_empty_project_is_planned_provisioned_then_left_alone(cloud, tmp_path):
    """Also: first contact is verified. Each new server's host key is in its cloud-init user data
    and pinned in known_hosts before anyone connects; the private half is in no output, even at
    -vvv, and not left on the controller."""
    fake, client = cloud
    rc, out = provision(fake, tmp_path, "--check")
    assert rc == 0 and changed(out) > 0 and writes(fake) == {}
    assert all(f"wrinklefree-base-{n}" in out for n in (1, 2, 3))

    rc, out = provision(fake, tmp_path, "-vvv")
    assert rc == 0, out[-3000:]
    servers = {s.name: s for s in client.servers.get_all()}
    assert sorted(servers) == ["wrinklefree-base-1", "wrinklefree-base-2", "wrinklefree-base-3"]
    assert [servers[f"wrinklefree-base-{n}"].location.name for n in (1, 2, 3)] == ["fsn1", "nbg1", "fsn1"]
    assert all(s.status == "running" and s.labels == {"managed-by": "wrinklefree", "layer": "base", "role": "bitnet.wireguard"}
               for s in servers.values())
    (firewall,) = client.firewalls.get_all()
    assert sorted((r.protocol, r.port) for r in firewall.rules) == [("tcp", "22"), ("udp", "51820")]
    assert [g.name for g in client.placement_groups.get_all()] == ["wrinklefree-base-1"]
    pinned = dict(line.split(" ", 1) for line in (tmp_path / "known_hosts").read_text().splitlines())
    for server in servers.values():
        config = yaml.safe_load(fake.user_data[server.name])
        assert config["ssh_genkeytypes"] == [] and config["ssh_deletekeys"] is True
        public, private = config["ssh_keys"]["ed25519_public"], config["ssh_keys"]["ed25519_private"]
        assert pinned[server.public_net.ipv4.ip] == public and public.startswith("ssh-ed25519 ")
        assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----") and private.splitlines()[1] not in out
    assert not list((tmp_path / "tmp").glob("wf-host-keys-*"))

    before = writes(fake)
    rc, out = provision(fake, tmp_path)
    assert rc == 0 and changed(out) == 0 and writes(fake) == before


def test_scaling_down_needs_confirmation_stays_within_the_limit_and_spares_protected_servers(cloud, tmp_path):
    fake, client = cloud
    assert provision(fake, tmp_path)[0] == 0
    two = dict(BASE, count=2)

    rc, out = provision(fake, tmp_path, layers=[two])
    assert rc != 0 and "would delete wrinklefree-base-3: set provision_delete=true" in out
    rc, out = provision(fake, tmp_path, layers=[dict(BASE, count=1)], provision_delete=True)
    assert rc != 0 and "provision_max_delete_fraction (0.5) of layer base (2 of 3)" in out
    client.servers.get_by_name("wrinklefree-base-3").change_protection(delete=True).wait_until_finished()
    rc, out = provision(fake, tmp_path, layers=[two], provision_delete=True)
    assert rc != 0 and "protected against deletion at Hetzner: wrinklefree-base-3" in out
    assert len(client.servers.get_all()) == 3 and "cloud DELETE /v1/servers" not in " ".join(writes(fake))

    client.servers.get_by_name("wrinklefree-base-3").change_protection(delete=False).wait_until_finished()
    # A server the toolkit did not make is never deleted, whatever the declaration.
    client.servers.create("hand-made", server_type=client.server_types.get_by_name("cx22"),
                          image=client.images.get_by_name_and_architecture("debian-12", "x86")).action.wait_until_finished()
    # The confirmation as `-e provision_delete=true` gives it: a string.
    rc, out = provision(fake, tmp_path, layers=[two], provision_delete="true")
    assert rc == 0, out
    assert sorted(s.name for s in client.servers.get_all()) == ["hand-made", "wrinklefree-base-1", "wrinklefree-base-2"]


def test_names_skip_a_dedicated_servers_and_scaling_keeps_the_lowest(cloud, tmp_path):
    """PROJECT-LAYER-N: a name the inventory gives a dedicated server is skipped, a server deleted
    by hand comes back under its name, scaling up takes the lowest free N and scaling down
    deletes the highest."""
    fake, client = cloud
    (tmp_path / "fleet.yml").write_text(yaml.safe_dump({"all": {"hosts": {"wrinklefree-base-2": {"ansible_host": "192.0.2.2"}}}}))
    fleet = ("-i", str(tmp_path / "fleet.yml"))

    def names():
        return sorted(s.name for s in client.servers.get_all())

    assert provision(fake, tmp_path, *fleet, layers=[dict(BASE, count=2)])[0] == 0
    assert names() == ["wrinklefree-base-1", "wrinklefree-base-3"]
    client.servers.get_by_name("wrinklefree-base-1").delete().wait_until_finished()
    assert provision(fake, tmp_path, *fleet, layers=[dict(BASE, count=2)])[0] == 0
    assert names() == ["wrinklefree-base-1", "wrinklefree-base-3"]
    rc, out = provision(fake, tmp_path, *fleet, layers=[dict(BASE, count=3)])
    assert rc == 0 and names() == ["wrinklefree-base-1", "wrinklefree-base-3", "wrinklefree-base-4"], out[-3000:]
    rc, out = provision(fake, tmp_path, *fleet, layers=[dict(BASE, count=2)], provision_delete=True)
    assert rc == 0 and names() == ["wrinklefree-base-1", "wrinklefree-base-3"], out[-3000:]


@pytest.mark.parametrize("layer,field,calls_api", [
    ({"count": -1}, "count 0 or more (got -1)", False),
    ({"cout": 3}, "cout", False),
    ({"name": "Base!"}, "name must be 1-20 lower-case", False),
    ({"labels": {"layer": "x"}}, "not managed-by or layer", False),
    ({"server_type": "cx99"}, 'server_type must be one of cax31, ccx33, cx22 (got "cx99")', True),
    ({"locations": ["fsn1", "mars1"]}, 'locations each one of fsn1, nbg1, hel1 where it can be ordered (got ["fsn1", "mars1"])', True),
    ({"server_type": "cax31", "image": "centos-7"}, 'image one of debian-12, ubuntu-24.04 for its architecture (got "centos-7")', True),
], ids=["negative-count", "misspelt-count", "bad-name", "reserved-label", "unknown-type", "unknown-location", "no-such-image"])
def test_an_impossible_request_fails_naming_its_field_before_any_write(cloud, tmp_path, layer, field, calls_api):
    fake, _ = cloud
    layer = {**BASE, **layer}
    if "cout" in layer:  # a misspelt field in place of count
        del layer["count"]
    rc, out = provision(fake, tmp_path, layers=[layer])
    assert rc != 0 and field in out, out
    assert writes(fake) == {} and (sum(fake.requests.values()) > 0) == calls_api


def test_no_layer_declared_makes_no_api_call(cloud, tmp_path):
    """site.yml's first step on a fleet made by hand, even with servers of the project."""
    fake, client = cloud
    client.servers.create("wrinklefree-base-1", labels={"managed-by": "wrinklefree", "layer": "base"},
                          server_type=client.server_types.get_by_name("cx22"),
                          image=client.images.get_by_name_and_architecture("debian-12", "x86")).action.wait_until_finished()
    before = sum(fake.requests.values())
    rc, out = provision(fake, tmp_path, layers=[])
    assert rc == 0 and changed(out) == 0 and sum(fake.requests.values()) == before, out
    assert [server.name for server in client.servers.get_all()] == ["wrinklefree-base-1"]


def test_the_token_goes_over_https_only(cloud, tmp_path):
    """http carries the read-write token in clear: allowed on loopback only (issue 32, finding 5)."""
    fake, _ = cloud
    rc, out = provision(fake, tmp_path, provision_hcloud_endpoint="http://api.hetzner.cloud/v1")
    assert rc != 0 and "provision_hcloud_endpoint must be https://HOST/PATH" in " ".join(out.split()), out
    assert sum(fake.requests.values()) == 0


def test_a_misspelt_input_is_named(cloud, tmp_path):
    fake, _ = cloud
    rc, out = provision(fake, tmp_path, provision_max_delete_fractoin=1)
    assert rc != 0 and "provision_max_delete_fractoin" in out and sum(fake.requests.values()) == 0


def test_api_faults_are_retried_or_reported_and_a_rerun_completes_without_duplicates(cloud, tmp_path):
    fake, client = cloud
    fake.inject("cloud", "500@/v1/actions/")  # a 5xx while a create waits on its action
    fake.inject("cloud", "ok@POST /v1/servers", times=2)
    fake.inject("cloud", "422:resource_limit_exceeded@POST /v1/servers", times=4)  # the third server, every try
    rc, out = provision(fake, tmp_path)
    assert rc != 0 and "injected resource_limit_exceeded" in out and "wrinklefree-base-" in out
    assert "500@/v1/actions/" not in fake.faults["cloud"]  # the 5xx was met, and retried
    assert len(client.servers.get_all()) == 2

    fake.faults["cloud"].clear()
    fake.project.server_limit = 3
    rc, out = provision(fake, tmp_path)
    assert rc == 0, out
    assert sorted(s.name for s in client.servers.get_all()) == [f"wrinklefree-base-{n}" for n in (1, 2, 3)]
    assert "uniqueness_error" not in out
    # The project's own limit (a fourth server) is reported with the API's message.
    rc, out = provision(fake, tmp_path, layers=[dict(BASE, count=4)])
    assert rc != 0 and "wrinklefree-base-4: server limit of 3 reached" in out
