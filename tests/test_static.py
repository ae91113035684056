"""Static checks: syntax of every playbook, linters, collection minimums, plugin docs."""

from __future__ import annotations

import json

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion

from wrinklefree_lab.helpers import ROOT, env, run

PLAYBOOKS = sorted(
    p.relative_to(ROOT) for p in (ROOT / "playbooks").rglob("*.yml")
    if p.parent.name not in ("tasks", "files", "vars") and p.name != "vars.yml"
)


@pytest.mark.parametrize("path", PLAYBOOKS, ids=str)
def test_playbook_syntax(path):
    run("ansible-playbook", "--syntax-check", path)


def test_yamllint():
    run("yamllint", "--strict", ".")


def test_ansible_lint_production_profile(tmp_path):
    # ansible-lint puts ~/.ansible/collections first: an installed copy of this collection there
    # would be linted in place of the checkout.
    run("ansible-lint", "--nocolor", "--profile", "production", env=env(ANSIBLE_HOME=str(tmp_path)))


def test_installed_collections_satisfy_requirements():
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    installed = json.loads(run("ansible-galaxy", "collection", "list", "--format", "json").stdout)
    versions = {name: info["version"] for path in installed.values() for name, info in path.items()}
    for item in wanted:
        minimum = item["version"].removeprefix(">=")
        assert item["name"] in versions, f"{item['name']} is not installed"
        assert LooseVersion(versions[item["name"]]) >= LooseVersion(minimum), (
            f"{item['name']} {versions[item['name']]} < {minimum}"
        )


def test_filter_docs_render():
    out = run("ansible-doc", "-t", "filter", "wrinklefree.deployer.unknown_role_vars").stdout
    assert "did you mean" in out or "closest declared name" in out


def test_role_argument_specs_render():
    out = run("ansible-doc", "-t", "role", "wrinklefree.deployer.base").stdout
    assert "base_firewall_allow" in out


def test_vars_plugin_docs_render():
    out = run("ansible-doc", "-t", "vars", "wrinklefree.deployer.wireguard_mesh").stdout
    assert "mesh_address" in out and "mesh_members" in out


def test_inventory_plugin_docs_render():
    out = run("ansible-doc", "-t", "inventory", "wrinklefree.deployer.hetzner_fleet").stdout
    assert "connect_via" in out and "HCLOUD_TOKEN" in out and "retry_max_wait" in out


@pytest.mark.parametrize("kind,name,expected", [
    ("module", "wireguard_health", "max_handshake_age"),
    ("module", "sky_job", "wait_for"),
    ("module", "sky_service", "blue_green"),
    ("module", "sky_service_info", "is_spot"),
    ("module", "sky_accelerator_info", "show-gpus"),
    ("filter", "frontdoor_servers", "another host's address"),
    ("filter", "frontdoor_input_problems", "internet"),
    ("filter", "frontdoor_server_binds", "mesh address"),
    ("filter", "bitnet_server_args", "mlock"),
    ("filter", "bitnet_server_arg_problems", "--embeddings"),
    ("filter", "bitnet_input_problems", "hash lock"),
    ("filter", "runbook_host_problems", "implicit"),
    ("filter", "rolling_serial", "first run"),
    ("filter", "fleet_status", "burst_price"),
    ("filter", "wireguard_addresses", "registry"),
    ("filter", "wireguard_registry", "directive in it"),
    ("filter", "bitnet_cpu_profile", "AVX2"),
    ("filter", "bitnet_cmake_args", "GGML_NATIVE=OFF"),
    ("filter", "pip_lock_problems", "require-hashes"),
    ("filter", "wireguard_network_conflicts", "connected route"),
    ("filter", "wireguard_route_conflicts", "default route"),
    ("filter", "wireguard_input_problems", "IFNAMSIZ"),
    ("filter", "base_rule_problems", "sources"),
    ("filter", "base_input_problems", "AllowUsers"),
    ("filter", "preflight_layer_problems", "kubelet"),
    ("filter", "provision_wanted", "placement group"),
    ("filter", "provision_too_many_deletions", "GONE of HAVE"),
    ("filter", "serve_base_layer", "problems"),
    ("filter", "serve_shipped_releases", "CPU flags"),
    ("test", "login_name", "useradd"),
    ("test", "interface_name", "IFNAMSIZ"),
    ("test", "wireguard_public_key", "Curve25519"),
])
def test_module_and_filter_docs_render(kind, name, expected):
    assert expected in run("ansible-doc", "-t", kind, f"wrinklefree.deployer.{name}").stdout


def test_wireguard_role_docs_render():
    out = run("ansible-doc", "-t", "role", "wrinklefree.deployer.wireguard").stdout
    assert "wireguard_address_plan" in out and "ENTRY POINT: *health*" in out and "ENTRY POINT: *validate*" in out


def test_node_pool_role_docs_render():
    out = run("ansible-doc", "-t", "role", "wrinklefree.deployer.skypilot_node_pool").stdout
    assert "base_ssh_tcp_forwarding_users" in out and "skypilot_node_pool_wheelhouse" in out and "ENTRY POINT: *leave*" in out


def test_bitnet_role_docs_render():
    out = run("ansible-doc", "-t", "role", "wrinklefree.deployer.bitnet").stdout
    assert "bitnet_submodule_urls" in out and "bitnet_model_checksum_required" in out
    assert "ENTRY POINT: *plan*" in out and "ENTRY POINT: *build*" in out and "bitnet_mesh_address" in out


def test_frontdoor_role_docs_render():
    out = run("ansible-doc", "-t", "role", "wrinklefree.deployer.frontdoor").stdout
    assert "frontdoor_threshold" in out and "frontdoor_burst_api_key" in out


def test_role_readmes_list_the_inputs_of_their_argument_specs():
    """Each role README's input table is the one bin/role-inputs writes from meta/argument_specs.yml."""
    run(ROOT / "bin" / "role-inputs", "--check")
