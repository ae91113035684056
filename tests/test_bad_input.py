"""A wrong value fails before any host is touched, with a message naming the variable.

The inventory's two hosts are closed ports on loopback: had validation let a value through, the
first task that needs a host would find it unreachable, and the test would see it.
"""

from __future__ import annotations

import pytest
import yaml

from wrinklefree_lab import helpers
from wrinklefree_lab.helpers import output, playbook

CASES = {
    "port-not-int": ({"base_ssh_port": "abc"}, "base_ssh_port"),
    "port-range": ({"base_ssh_port": 70000}, "base_ssh_port must be 1-65535"),
    "typo": ({"base_ssh_prot": 2222}, "unknown variable base_ssh_prot (did you mean base_ssh_port?)"),
    "unknown-proto": (
        {"base_firewall_allow": [{"name": "x", "port": 1, "proto": "sctp"}]},
        "value of proto must be one of: tcp, udp, got: sctp found in base_firewall_allow",
    ),
    "rule-port": ({"base_firewall_allow": [{"name": "web", "port": 0}]}, "base_firewall_allow[0] (web)"),
    "rule-source": (
        {"base_firewall_allow": [{"name": "web", "port": 80, "sources": ["10.0.0.0/33"]}]},
        "not valid: ['10.0.0.0/33']",
    ),
    "bad-key": ({"base_admin_ssh_public_keys": ["not a key"]}, "base_admin_ssh_public_keys must hold"),
    "root-lockout": ({"base_ssh_permit_root_login": "no"}, "base_ssh_permit_root_login is \"no\""),
    "allow-users-without-ansible": ({"base_ssh_allow_users": ["deploy"]}, "leaves out root: sshd would refuse Ansible"),
    "allow-users-without-admin": (
        {"base_ssh_allow_users": ["root", "ops"]}, "leaves out deploy: sshd would refuse the admin user"),
    # Whether HOST is where Ansible connects from is not known: only a plain name counts (issue 32, finding 11).
    "allow-users-ansible-at-host": (
        {"base_ssh_allow_users": ["root@10.0.0.1", "deploy"]}, "leaves out root: sshd would refuse Ansible (ansible_user)"),
    "no-way-to-become": (
        {"ansible_user": "deploy", "base_admin_sudo_nopasswd": False},
        "base_admin_sudo_nopasswd is false but Ansible connects to closed-a as the admin user deploy (ansible_user), whose password is locked",
    ),
    "root-login-choice": ({"base_ssh_permit_root_login": "yes"}, "base_ssh_permit_root_login"),
    "wg-typo": ({"wireguard_prot": 51821}, "unknown variable wireguard_prot (did you mean wireguard_port?)"),
    "wg-port": ({"wireguard_port": 0}, "wireguard_port must be 1-65535, got 0"),
    "wg-cidr-too-small": (
        {"wireguard_address_plan": [{"name": "tiny", "cidr": "10.100.0.0/32", "group": "base"}]},
        "range tiny (10.100.0.0/32) has no free address for closed-b: 1 addresses, all taken",
    ),
    "wg-bad-peer-key": (
        {"wireguard_external_peers": [{"name": "laptop", "public_key": "abc=", "address": "10.100.255.1"}]},
        "wireguard_external_peers[0] (laptop): public_key must be a WireGuard key (44 characters of base64 ending in '='), got \"abc=\"",
    ),
    "wg-duplicate-address": ({"wireguard_address": "10.100.0.9"}, "duplicate address 10.100.0.9 for closed-a and closed-b"),
    "wg-peer-on-host-address": (
        {"wireguard_address": "10.100.0.9", "wireguard_external_peers": [
            {"name": "laptop", "public_key": "x" * 42 + "A=", "address": "10.100.0.9"}]},
        "duplicate address 10.100.0.9 for external peer laptop and closed-a",
    ),
    "wg-peer-default-route": (
        {"wireguard_external_peers": [{"name": "laptop", "public_key": "x" * 42 + "A=", "address": "10.100.255.1",
                                       "allowed_ips": ["0.0.0.0/0"]}]},
        "wireguard_external_peers[0] (laptop): allowed_ips 0.0.0.0/0 is a default route",
    ),
    "wg-peer-route-over-ssh": (
        {"wireguard_external_peers": [{"name": "vpn", "public_key": "x" * 42 + "A=", "address": "10.100.255.1",
                                       "allowed_ips": ["0.0.0.0/1", "128.0.0.0/1"]}]},
        "allowed_ips 0.0.0.0/1 overlaps the address Ansible reaches closed-a at (127.0.0.1/32)",
    ),
    "wg-plan-outside-network": (
        {"wireguard_address_plan": [{"name": "far", "cidr": "10.200.0.0/24"}]},
        "wireguard_address_plan range far (10.200.0.0/24) is outside wireguard_network 10.100.0.0/16",
    ),
    "bitnet-typo": ({"bitnet_profil": "x86_avx2"}, "unknown variable bitnet_profil (did you mean bitnet_profile?)"),
    "bitnet-profile": (
        {"bitnet_profile": "x86_avx3"},
        'bitnet_profile "x86_avx3" is unknown; allowed: auto, native, arm_dotprod, x86_avx2, x86_avx512, x86_avx512_vnni',
    ),
    "bitnet-kernel": ({"bitnet_kernel": "tl3"}, "value of bitnet_kernel must be one of: auto, i2_s, tl1, tl2, got: tl3"),
    "bitnet-no-checksum": (
        {"bitnet_models": [{"name": "m", "url": "https://mirror.example/m.gguf", "port": 8080}]},
        "bitnet_models[0] (m): sha256 is required (bitnet_model_checksum_required)",
    ),
    "bitnet-unhashed-venv": (
        {"bitnet_venv_requirements": str(helpers.ROOT / "tests" / "fixtures" / "unhashed-requirements.txt")},
        "every requirement pinned with == and hashed (uv pip compile --generate-hashes): "
        "line 1: numpy==2.4.6 has no --hash; line 2: sentencepiece is not pinned with ==",
    ),
    "wg-interface-too-long": (
        {"wireguard_interface": "wg-prod-mesh-001"},
        'wireguard_interface must be 1-15 letters, digits and _=+.- (a Linux interface name), got "wg-prod-mesh-001"',
    ),
    "bitnet-mesh-interface": ({"bitnet_mesh_interface": "wg/0"}, 'bitnet_mesh_interface must be an interface name (1-15 letters, digits and _=+.-), got "wg/0"'),
    "bitnet-extra-port": (
        {"bitnet_server_extra_args": ["--metrics", "--port", "22"]},
        "bitnet_server_extra_args: --port is set by the role; set bitnet_models[].port instead",
    ),
    "bitnet-extra-host": (
        {"bitnet_server_extra_args": ["--host", "0.0.0.0"]},
        "bitnet_server_extra_args: --host is set by the role; set bitnet_server_bind (or the mesh address) instead",
    ),
    "bitnet-model-extra-args": (
        {"bitnet_models": [{"name": "m", "url": "https://mirror.example/m.gguf", "sha256": "0" * 64, "port": 8080,
                            "extra_args": ["--api-key", "k" * 20]}]},
        "bitnet_models[0].extra_args: --api-key is set by the role; set bitnet_server_api_key instead",
    ),
    "bitnet-relative-venv-lock": ({"bitnet_venv_requirements": "requirements.txt"}, "no such absolute path"),
    "bitnet-rolling-batch": ({"bitnet_rolling_batch": 0}, "bitnet_rolling_batch must be at least 1, got 0"),
    "bitnet-threads": ({"bitnet_server_threads": 0}, "bitnet_server_threads must be unset (physical cores) or at least 1, got 0"),
    "bitnet-model-threads": (
        {"bitnet_models": [{"name": "m", "src": "/m.gguf", "sha256": "0" * 64, "port": 8080, "threads": 0}]},
        "bitnet_models[0] (m)",
    ),
    "bitnet-wildcard": ({"bitnet_server_bind": "0.0.0.0"}, 'a single address, never a wildcard, got "0.0.0.0"'),
    "bitnet-branch": ({"bitnet_version": "main"}, 'bitnet_version must be a whole commit id (40 lowercase hex digits'),
    "bitnet-short-commit": ({"bitnet_version": "c82b5e6"}, 'a short one can become ambiguous), got "c82b5e6"'),
    "admin-is-root": ({"base_admin_user": "root"}, "base_admin_user must be a valid login name other than root (got root)"),
    "ssh-port-on-front-door": (
        {"base_ssh_port": 8000},
        "closed-a: base_ssh_port 8000, frontdoor_port 8000, the front door's statistics 8404 must be different TCP ports",
    ),
    "model-port-on-front-door": (
        {"bitnet_models": [{"name": "m", "src": "/m.gguf", "sha256": "0" * 64, "port": 8000}]},
        "base_ssh_port 22, frontdoor_port 8000, the front door's statistics 8404, bitnet_models m 8000 must be different",
    ),
    "service-user-is-admin": ({"bitnet_user": "deploy"}, "bitnet_user (deploy) must not be root, base_admin_user or ansible_user"),
    "bitnet-user-root": ({"bitnet_user": "root"}, "bitnet_user must be a login name other than root"),
    "wg-network-over-ansible": (
        {"wireguard_network": "127.0.0.0/16", "wireguard_address_plan": [{"name": "lo", "cidr": "127.0.0.0/20", "group": "base"}]},
        "wireguard_network 127.0.0.0/16 overlaps loopback (127.0.0.0/8)",
    ),
    "frontdoor-typo": ({"frontdoor_treshold": 4}, "unknown variable frontdoor_treshold (did you mean frontdoor_threshold?)"),
    "frontdoor-slots": ({"frontdoor_slots": 0}, "frontdoor_slots must be unset or at least 1, got 0"),
    "frontdoor-threshold": ({"frontdoor_threshold": 0}, "frontdoor_threshold must be unset or at least 1, got 0"),
    "frontdoor-rate-limit": ({"frontdoor_rate_limit": -1}, "frontdoor_rate_limit must be 0 (none) or more, got -1"),
    "bitnet-short-api-key": ({"bitnet_server_api_key": "short"}, "bitnet_server_api_key must be empty or at least 16 characters"),
    "frontdoor-public-bind": (
        {"frontdoor_bind": "203.0.113.7"},
        "frontdoor_bind 203.0.113.7 is a public address: set frontdoor_tls_certificate (a PEM file) and frontdoor_api_keys",
    ),
    "frontdoor-burst-without-tls": (
        {"frontdoor_burst": True, "frontdoor_burst_endpoint": "http://198.51.100.9:30001", "frontdoor_burst_api_key": "k" * 20},
        'got "http://198.51.100.9:30001" (a public endpoint needs TLS)',
    ),
    "frontdoor-burst-without-key": (
        {"frontdoor_burst": True, "frontdoor_burst_endpoint": "https://burst.example:30001"},
        "frontdoor_burst_api_key is empty: the burst replicas ask every request for their key",
    ),
    "frontdoor-allow-from": (
        {"frontdoor_allow_from": ["10.0.0.0/8", "10.0.0.0/33", "office"]},
        "frontdoor_allow_from must be addresses or networks, not: ['10.0.0.0/33', 'office']",
    ),
    "frontdoor-burst-without-endpoint": (
        {"frontdoor_burst": True, "frontdoor_burst_api_key": "k" * 20},
        'frontdoor_burst_endpoint must be https://HOST:PORT, or http://ADDRESS:PORT on a private address, got ""',
    ),
}

CLOSED = ("closed-a", "closed-b")
# The cases whose check compares two hosts; the others run on closed-a alone (a third less work
# each; test_one_hosts_bad_input_stops_every_host shows one host's bad input stops the others).
TWO_HOSTS = {"wg-cidr-too-small", "wg-duplicate-address"}
GOOD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMr0nJ2wX3m1o8m3x0u5l2b1Gm2eYx0aQkS3c1v0xw8W test"


def closed_inventory(path, names=CLOSED):
    hosts = {name: {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "root"} for name in names}
    path.write_text(yaml.safe_dump({"all": {"children": {"base": {"hosts": hosts},
                                                         "wireguard": {"hosts": dict.fromkeys(names)},
                                                         "bitnet": {"hosts": dict.fromkeys(names)},
                                                         "edge": {"hosts": dict.fromkeys(names)}}}}))
    return path


@pytest.fixture(scope="module")
def closed_host(tmp_path_factory):
    return closed_inventory(tmp_path_factory.mktemp("closed") / "hosts.yml")


@pytest.fixture(scope="module")
def one_closed_host(tmp_path_factory):
    return closed_inventory(tmp_path_factory.mktemp("closed-one") / "hosts.yml", CLOSED[:1])


@pytest.mark.parametrize("name", CASES)
def test_bad_value_fails_before_any_host_change(closed_host, one_closed_host, name):
    extravars, message = CASES[name]
    hosts = CLOSED if name in TWO_HOSTS else CLOSED[:1]
    runner = playbook("playbooks/site.yml", closed_host if name in TWO_HOSTS else one_closed_host,
                      extravars={"base_admin_ssh_public_keys": [GOOD_KEY], **extravars})
    text = output(runner)
    assert runner.rc != 0
    assert runner.stats["failures"] == dict.fromkeys(hosts, 1), text[-3000:]
    assert runner.stats["dark"] == {}, "a host was contacted before validation failed"
    assert message in " ".join(text.split()), text[-3000:]


@pytest.mark.parametrize("extravars", [{}, {"frontdoor_allow_from": ["10.0.0.0/8", "192.0.2.7", "fd00::/8"]}],
                         ids=["defaults", "lists"])
def test_good_values_reach_the_host(closed_host, extravars):
    """The control case: valid input passes validation and only then meets the closed port."""
    runner = playbook("playbooks/site.yml", closed_host, extravars={"base_admin_ssh_public_keys": [GOOD_KEY], **extravars})
    assert runner.stats["dark"] == dict.fromkeys(CLOSED, 1), output(runner)[-3000:]


LOCKS = helpers.ROOT / "tests" / "fixtures"


def pool_preflight(closed_host, tmp_path, extravars):
    """preflight.yml on the closed hosts with closed-a as the SkyPilot controller host, its pool
    reached at ansible_host: the runner and its output on one line."""
    inventory = yaml.safe_load(closed_host.read_text())
    inventory["all"]["children"]["sky_controller"] = {"hosts": {"closed-a": None}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    runner = playbook("playbooks/preflight.yml", tmp_path / "hosts.yml",
                      extravars={"base_admin_ssh_public_keys": [GOOD_KEY], "base_ssh_tcp_forwarding_users": ["skypilot"],
                                 "skypilot_node_pool_via": "ansible_host", "skypilot_node_pool_key_from": ["10.0.0.5"],
                                 **extravars})
    return runner, " ".join(output(runner).split())


@pytest.mark.parametrize(("extravars", "message"), [
    ({"skypilot_node_pool_key_from": ["10.0.0.5", "10.1.0.0/16"]}, None),
    ({"skypilot_node_pool_key_from": ["10.0.0.5", "controller.example"]},
     "skypilot_node_pool_key_from must list the addresses or CIDRs the controller connects from"),
    ({"skypilot_node_pool_key_from": []}, "(required with skypilot_node_pool_via=ansible_host)"),
    ({"base_ssh_tcp_forwarding_users": ["deploy"]},
     "The SkyPilot node pool tunnels over SSH, which the base role forbids by default: "
     "set base_ssh_tcp_forwarding_users: [skypilot] for group bitnet"),
    ({"skypilot_node_pool_user": "deploy"}, "skypilot_node_pool_user must be a login name of its own, not root"),
    ({"skypilot_node_pool_user": "root"}, "skypilot_node_pool_user must be a login name of its own"),
    ({"base_ssh_allow_users": ["root", "deploy"]}, "leaves out skypilot: add it, or SkyPilot cannot log in"),
    ({"skypilot_node_pool_name": "Hetzner_Base"}, "skypilot_node_pool_name must be lowercase"),
    ({"skypilot_node_pool_version": "0.15.0"},
     "must be a hash lock pinning skypilot==0.15.0 (skypilot_node_pool_version), every requirement pinned with == "
     "and hashed; make one with uv pip compile --universal --generate-hashes (roles/skypilot_node_pool/README.md). "
     "Not found on the controller."),
    ({"skypilot_node_pool_requirements": str(LOCKS / "unhashed-requirements.txt")},
     "line 1: numpy==2.4.6 has no --hash; line 2: sentencepiece is not pinned with =="),
], ids=["key-from", "key-from-name", "key-from-empty", "no-forwarding", "user-is-admin", "user-root", "allow-users",
        "pool-name", "no-lock", "unhashed-lock"])
def test_node_pool_input_is_checked_before_any_host_change(closed_host, tmp_path, extravars, message):
    """The SkyPilot controller host's node pool, with pool hosts reached at ansible_host: its
    own inputs and where they meet the base role's (the pool user's forwarding and login),
    checked by preflight, which contacts no host. (test_node_pool: skypilot.yml played alone
    stops the same way on the side lab.)"""
    runner, text = pool_preflight(closed_host, tmp_path, extravars)
    if message is None:
        assert runner.rc == 0, text[-3000:]
    else:
        assert runner.stats["failures"] == {"closed-a": 1} and runner.stats["dark"] == {}, text[-3000:]
        assert message in text, text[-3000:]


def test_a_port_of_k3s_on_a_pool_host_is_refused(closed_host, tmp_path):
    """k3s's API (6443) on the node pool's hosts is a port no other layer may take: an SSH port
    moved there would lose the pool or the host (issue 32, finding 10)."""
    runner, text = pool_preflight(closed_host, tmp_path, {"base_ssh_port": 6443})
    assert runner.stats["failures"] == dict.fromkeys(CLOSED, 1) and runner.stats["dark"] == {}, text[-3000:]
    assert "closed-a: base_ssh_port 6443, frontdoor_port 8000, the front door's statistics 8404, k3s's API 6443" in text


def test_one_hosts_bad_input_stops_every_host(closed_host, tmp_path):
    """A value wrong on one host only: preflight stops the others too, before any contact."""
    inventory = yaml.safe_load(closed_host.read_text())
    inventory["all"]["children"]["base"]["hosts"]["closed-a"]["base_ssh_allow_users"] = ["ops"]
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    runner = playbook("playbooks/site.yml", tmp_path / "hosts.yml", extravars={"base_admin_ssh_public_keys": [GOOD_KEY]})
    text = output(runner)
    assert runner.rc != 0 and runner.stats["failures"] == {"closed-a": 1}, text[-3000:]
    assert runner.stats["dark"] == {}, "closed-b was contacted after closed-a failed preflight"
    assert "base_ssh_allow_users on closed-a (ops) leaves out root and deploy" in " ".join(text.split())


@pytest.mark.parametrize(("path", "extravars", "message"), [
    ("playbooks/base.yml", {"base_ssh_port": 70000}, "base_ssh_port must be 1-65535"),
    ("playbooks/wireguard.yml", {"wireguard_port": 0}, "wireguard_port must be 1-65535, got 0"),
    ("playbooks/bitnet.yml", {"bitnet_server_bind": "0.0.0.0"}, "never a wildcard"),
    ("playbooks/frontdoor.yml", {"frontdoor_threshold": 0}, "frontdoor_threshold must be unset or at least 1, got 0"),
])
def test_a_layer_played_alone_checks_its_own_input(closed_host, monkeypatch, path, extravars, message):
    """Without site.yml's preflight, the role runs its validate.yml itself, before any change.
    (No fact gathering, which would meet the closed port before the role starts.)"""
    suite_env = helpers.env
    monkeypatch.setattr(helpers, "env", lambda **more: suite_env(ANSIBLE_GATHERING="explicit", **more))
    runner = playbook(path, closed_host, extravars={"base_admin_ssh_public_keys": [GOOD_KEY], **extravars})
    text = output(runner)
    assert runner.stats["failures"] == dict.fromkeys(CLOSED, 1), text[-3000:]
    assert runner.stats["dark"] == {}, "a host was contacted before validation failed"
    assert message in " ".join(text.split()), text[-3000:]


@pytest.mark.parametrize(("runbook", "host", "message"), [
    ("add-host", "localhost", "host: localhost is not a host of the inventory (closed-a, closed-b, closed-local)"),
    ("remove-host", "localhost", "host: localhost is not a host of the inventory (closed-a, closed-b, closed-local)"),
    ("add-host", "closed-local", "host: closed-local is reached by connection local, not SSH"),
    ("remove-host", "closed-a,nowhere", "host: nowhere is not a host of the inventory"),
])
def test_a_runbooks_host_must_be_a_fleet_host_over_ssh(closed_host, tmp_path, runbook, host, message):
    """Ansible's implicit localhost is in hostvars but not the inventory, and a host with a local
    connection is this machine: neither may get the base role's firewall and sshd, or lose its
    mesh. Refused before any host is contacted."""
    inventory = yaml.safe_load(closed_host.read_text())
    inventory["all"]["children"]["base"]["hosts"]["closed-local"] = {"ansible_connection": "local"}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    runner = playbook(f"playbooks/runbooks/{runbook}.yml", tmp_path / "hosts.yml",
                      extravars={"base_admin_ssh_public_keys": [GOOD_KEY], "host": host})
    text = " ".join(output(runner).split())
    assert runner.rc != 0 and runner.stats["dark"] == {} and set(runner.stats["failures"]) == {"localhost"}, text[-3000:]
    assert message in text, text[-3000:]


@pytest.mark.parametrize(("extravars", "message"), [
    ({"upgrade_batch": 2, "upgrade_version": "abcdef1" * 5 + "abcde"}, "must be at least 1 and below the number of hosts (2)"),
    ({"upgrade_version": "main"}, "bitnet_version must be a whole commit id"),
], ids=["batch-of-every-host", "branch"])
def test_the_rolling_upgrade_refuses_bad_input_before_any_host_change(closed_host, extravars, message):
    runner = playbook("playbooks/runbooks/bitnet-upgrade.yml", closed_host, extravars={"base_admin_ssh_public_keys": [GOOD_KEY], **extravars})
    text = " ".join(output(runner).split())
    assert runner.rc != 0 and runner.stats["dark"] == {} and runner.stats["failures"], text[-3000:]
    assert message in text, text[-3000:]


def test_preflight_comes_before_any_server_is_made(closed_host, tmp_path):
    """With layers declared, a wrong value for the hosts there are stops site.yml before the
    provisioning play asks the Cloud API anything (its endpoint here is a closed port, which it
    would report)."""
    runner = playbook("playbooks/site.yml", closed_host, extravars={
        "base_admin_ssh_public_keys": [GOOD_KEY], "bitnet_server_extra_args": ["--port", "22"],
        "provision_hcloud_token": "t" * 64, "provision_hcloud_endpoint": "http://127.0.0.1:1/v1",
        "provision_known_hosts": str(tmp_path / "known_hosts"), "provision_ssh_keys": [GOOD_KEY],
        "provision_layers": [{"name": "base", "count": 1, "server_type": "cx22", "locations": ["fsn1"]}]})
    text = " ".join(output(runner).split())
    assert runner.stats["failures"] == dict.fromkeys(CLOSED, 1) and runner.stats["dark"] == {}, text[-3000:]
    assert "--port is set by the role" in text and "Provision |" not in text, text[-3000:]
