"""The WireGuard mesh on the suite's shared fleet (conftest.py), last of its users: real tunnels
between real hosts, traffic proven by WireGuard's own counters, a host added and removed without
disturbing the others' tunnels, and a key rotated while the mesh stays up. The tests run in
order and leave the fleet with 3 hosts in a full mesh."""

from __future__ import annotations

import time

import pytest

from hcloud import Client

from wrinklefree_lab.helpers import FLEET_PROJECT, changed_hosts, converge, mesh_registry, output, playbook, run, sh_out

# The fleet is one lab: its modules run on one pytest-xdist worker, in file order.
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]




def peers(host: str) -> dict[str, dict]:
    """Per peer public key: its transfer counters and latest handshake, from `wg show dump`."""
    result = {}
    for line in sh_out(host, "wg show wg0 dump").splitlines()[1:]:
        key, _, _, _, handshake, rx, tx, _ = line.split("\t")
        result[key] = {"handshake": int(handshake), "rx": int(rx), "tx": int(tx)}
    return result


def interface_identity(host: str) -> str:
    """ifindex of wg0 and the PID of its wireguard-go: both change when the interface restarts."""
    return sh_out(host, "cat /sys/class/net/wg0/ifindex; pgrep -x wireguard-go || true")


def ping(host: str, address: str) -> None:
    """Ping over the tunnel; the first packet may wait for a handshake, so retry for ~6 s."""
    sh_out(host, f"for i in 1 2 3 4 5 6; do ping -c1 -W1 {address} >/dev/null && exit 0; sleep 1; done; exit 1")


def model_server(host: str) -> str:
    """The PID of the host's llama-server: it changes when the server restarts."""
    return sh_out(host, "systemctl show -p MainPID --value bitnet-server@tiny").strip()


def assert_full_mesh(lab, hosts: list[str]) -> None:
    """Every host pings every other over its mesh address, and the counters of exactly that
    peer grow on both ends: the packets went through the tunnel."""
    mesh = mesh_registry(lab)
    for source in hosts:
        for target in hosts:
            if source == target:
                continue
            before_out = peers(source)[mesh[target]["public_key"]]
            before_in = peers(target)[mesh[source]["public_key"]]
            ping(source, mesh[target]["address"])
            after_out = peers(source)[mesh[target]["public_key"]]
            after_in = peers(target)[mesh[source]["public_key"]]
            assert after_out["tx"] > before_out["tx"] and after_out["rx"] > before_out["rx"], (source, target)
            assert after_in["rx"] > before_in["rx"], (source, target)


def test_converge_and_second_run_changes_nothing(fleet, fleet_first_run, fleet_second_run):
    first, second = fleet_first_run, fleet_second_run
    assert sorted(changed_hosts(first)) == [fleet.host(i) for i in (1, 2, 3)]
    assert changed_hosts(second) == {}, output(second)[-4000:]


def test_keys_stay_on_their_hosts(fleet, fleet_first_run):
    host = fleet.host(1)
    assert sh_out(host, "stat -c %a /etc/wireguard/wg0.key").strip() == "600"
    assert "PrivateKey" not in sh_out(host, "cat /etc/wireguard/wg0.conf")
    private = sh_out(host, "cat /etc/wireguard/wg0.key").strip()
    for path in fleet.inventory.rglob("*"):
        if path.is_file():
            assert private not in path.read_text(errors="ignore"), path


def test_every_host_reaches_every_other_through_the_tunnel(fleet, fleet_first_run):
    hosts = [fleet.host(i) for i in (1, 2, 3)]
    assert sorted(mesh_registry(fleet)) == hosts
    assert len({entry["address"] for entry in mesh_registry(fleet).values()}) == 3
    assert_full_mesh(fleet, hosts)


def declared(lab, count: int, **extra) -> dict:
    """provision.yml's extra vars: the fleet's Cloud project (the lab's fake API), its layer `base`
    declared with `count` Cloud servers (its dedicated host 3 is not one of them)."""
    state = lab.inventory / ".state"
    return {"provision_hcloud_endpoint": (state / "hetzner" / "endpoint").read_text() + "/v1",
            "provision_hcloud_token": (state / "hetzner" / "cloud-token").read_text(),
            "provision_project": FLEET_PROJECT, "provision_known_hosts": str(state / "known_hosts"),
            "provision_ssh_keys": [{"name": "lab", "public_key": (state / "id_ed25519.pub").read_text().strip()}],
            "provision_layers": [{"name": "base", "count": count, "server_type": "cx22", "locations": ["fsn1"],
                                  "labels": {"role": "bitnet.wireguard"}}], **extra}


def cloud(lab) -> Client:
    api = declared(lab, 0)
    return Client(token=api["provision_hcloud_token"], api_endpoint=api["provision_hcloud_endpoint"])


def test_adding_a_host_keeps_the_existing_tunnels(fleet, fleet_first_run):
    """The layer scaled up by one in the declaration, one site.yml run: provision.yml creates the
    server through the fake Cloud API, whose host factory starts its host (the name of the
    dedicated host 3 is skipped: wf-fleet-base-4), and the rest of the run converges it into the
    mesh without restarting anyone's tunnel."""
    old = [fleet.host(i) for i in (1, 2, 3)]
    addresses = {h: mesh_registry(fleet)[h]["address"] for h in old}
    identity = {h: interface_identity(h) for h in old}
    counters = {h: peers(h) for h in old}
    servers = {h: model_server(h) for h in old}
    converge(fleet, extravars=declared(fleet, 3))
    fleet.count = 4
    new = fleet.host(4)
    assert cloud(fleet).servers.get_by_name(new).labels == {"managed-by": FLEET_PROJECT, "layer": "base", "role": "bitnet.wireguard"}
    assert f"server {new} " in sh_out(fleet.host(1), "cat /etc/haproxy/haproxy.cfg")  # in the front door
    assert {h: model_server(h) for h in old} == servers, "a model server restarted"
    mesh = mesh_registry(fleet)
    assert {h: mesh[h]["address"] for h in old} == addresses
    for host in old:
        assert interface_identity(host) == identity[host], f"wg0 restarted on {host}"
        now = peers(host)
        for key, before in counters[host].items():
            # A peer that was removed and re-added, or an interface restart, resets its counters.
            assert now[key]["rx"] >= before["rx"] and now[key]["tx"] >= before["tx"], host
            assert now[key]["handshake"] >= before["handshake"], host
        assert mesh[new]["public_key"] in now
    assert_full_mesh(fleet, old + [new])


def test_a_host_gone_from_the_inventory_keeps_its_place_until_it_is_drained_and_deleted(fleet, fleet_first_run):
    """Absent is not removed: a server switched off (the inventory lists running servers) keeps
    its mesh address and its peers. Then the layer is scaled down by one: provision.yml drains
    the fourth host (front door, its model servers, the mesh) and deletes it at the API, whose
    host factory removes its host, and nobody else restarts."""
    old = [fleet.host(i) for i in (1, 2, 3)]
    entry = mesh_registry(fleet)[fleet.host(4)]
    gone = entry["public_key"]
    server = cloud(fleet).servers.get_by_name(fleet.host(4))
    server.power_off().wait_until_finished()
    converge(fleet, "playbooks/wireguard.yml")
    assert mesh_registry(fleet)[fleet.host(4)] == entry
    for host in old:
        assert gone in peers(host), host

    server.power_on().wait_until_finished()
    identity = {h: interface_identity(h) for h in old}
    converge(fleet, "playbooks/provision.yml", extravars=declared(fleet, 2, provision_delete=True))
    fleet.count = 3
    assert fleet.host(4) not in [s.name for s in cloud(fleet).servers.get_all()]
    assert run("podman", "container", "exists", fleet.host(4), check=False).returncode == 1  # the factory removed it
    assert fleet.host(4) not in mesh_registry(fleet)
    assert f"server {fleet.host(4)} " not in sh_out(fleet.host(1), "cat /etc/haproxy/haproxy.cfg")
    for host in old:
        assert gone not in peers(host) and interface_identity(host) == identity[host], host


def test_rotating_every_key_one_host_at_a_time_keeps_the_mesh(fleet, fleet_first_run):
    """Each host gets a new key, which the others shake hands with (after the run began) and
    the old one of which they forget; the mesh carries traffic throughout and after."""
    hosts = [fleet.host(i) for i in (1, 2, 3)]
    old = {h: mesh_registry(fleet)[h]["public_key"] for h in hosts}
    started = time.time()
    converge(fleet, "playbooks/runbooks/wireguard-rotate-keys.yml", extravars={"rotate": "all"})
    new = {h: mesh_registry(fleet)[h]["public_key"] for h in hosts}
    for host in hosts:
        assert new[host] != old[host] and sh_out(host, "wg show wg0 public-key").strip() == new[host], host
        seen = peers(host)
        for other in set(hosts) - {host}:
            assert old[other] not in seen and seen[new[other]]["handshake"] >= int(started), (host, other)
    assert_full_mesh(fleet, hosts)


def test_a_sync_lost_with_the_controller_is_made_by_the_next_run(fleet, fleet_first_run):
    """The controller dies after a host's wg0.conf is written and before its sync (here: the
    running interface loses a peer the file lists): the next run finds the file unchanged, yet
    syncs, because it compares the running interface with the file."""
    hosts = [fleet.host(i) for i in (1, 2, 3)]
    lost = mesh_registry(fleet)[hosts[1]]["public_key"]
    sh_out(hosts[0], f"wg set wg0 peer {lost} remove")
    assert lost not in peers(hosts[0])
    converge(fleet, "playbooks/wireguard.yml")
    assert lost in peers(hosts[0])
    assert_full_mesh(fleet, hosts)


LAPTOP = {"name": "laptop", "public_key": "x" * 42 + "A=", "address": "10.100.255.9"}


def static_routes(host: str) -> list[str]:
    return sh_out(host, "ip -4 route show dev wg0 proto static").split("\n")[:-1]


def test_external_peer_routes_only_its_own_ranges(fleet, fleet_first_run):
    """wg-quick installs no routes (Table = off); the role routes exactly the peers' validated
    ranges, live and without a restart, and a range over a host's own network is refused before
    the configuration is written."""
    hosts = [fleet.host(i) for i in (1, 2, 3)]
    default = {h: sh_out(h, "ip -4 route show default") for h in hosts}
    identity = {h: interface_identity(h) for h in hosts}
    converge(fleet, "playbooks/wireguard.yml",
             extravars={"wireguard_external_peers": [{**LAPTOP, "allowed_ips": ["192.168.77.0/24", "192.168.78.5/32"]}]})
    for host in hosts:
        assert sorted(route.split()[0] for route in static_routes(host)) == ["192.168.77.0/24", "192.168.78.5"], host
        assert sh_out(host, "ip -4 route show default") == default[host] and interface_identity(host) == identity[host]
    # The lab's own network (no host's ansible_host in this part of it): only the hosts' facts know it.
    own = fleet.address(1).rsplit(".", 1)[0] + ".240/29"
    runner = playbook("playbooks/wireguard.yml", fleet,
                      extravars={"wireguard_external_peers": [{**LAPTOP, "allowed_ips": [own]}]})
    assert runner.rc != 0 and changed_hosts(runner) == {}
    assert f"allowed_ips {own} overlaps the network of {hosts[0]} on eth0" in " ".join(output(runner).split())
    converge(fleet, "playbooks/wireguard.yml")
    for host in hosts:
        assert static_routes(host) == [] and LAPTOP["public_key"] not in peers(host)
        assert interface_identity(host) == identity[host]


def test_check_mode_on_the_converged_mesh_changes_nothing(fleet, fleet_first_run):
    """After the hosts, keys and peers above came and went (site.yml's own check run: test_lab)."""
    runner = converge(fleet, "playbooks/wireguard.yml", cmdline="--check --diff")
    assert changed_hosts(runner) == {}, output(runner)[-4000:]


def test_health_runbook_passes_then_names_a_dead_peer(fleet, fleet_first_run):
    converge(fleet, "playbooks/runbooks/wireguard-health.yml")
    dead, witness = fleet.host(3), fleet.host(1)
    key = mesh_registry(fleet)[dead]["public_key"]
    sh_out(dead, "systemctl stop wg-quick@wg0")
    # The witness forgets its session with the dead host, as after its own restart.
    sh_out(witness, f"wg set wg0 peer {key} remove && /usr/local/sbin/wireguard-sync wg0")
    try:
        runner = playbook("playbooks/runbooks/wireguard-health.yml", fleet, cmdline=f"--limit {witness}")
        assert runner.rc != 0
        assert f"without a handshake in the last 180 s: {dead} (never)" in " ".join(output(runner).split())
    finally:
        sh_out(dead, "systemctl start wg-quick@wg0")
    ping(witness, mesh_registry(fleet)[dead]["address"])
