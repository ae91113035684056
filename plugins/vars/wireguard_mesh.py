"""Vars plugin: the one loader of the WireGuard mesh registry: its entries as ordinary host variables."""

from __future__ import annotations

DOCUMENTATION = r"""
name: wireguard_mesh
short_description: Each host's WireGuard mesh address, public key and interface, from the mesh registry
description:
  - Reads C(wireguard-addresses.yml), which the wrinklefree.deployer.wireguard role keeps next to
    the inventory source (host name to C(address), C(public_key), C(endpoint), C(interface)), and
    gives each host in it the variables C(mesh_address), C(mesh_public_key), C(mesh_endpoint) and
    C(mesh_interface), and the group C(all) the variable C(mesh_members) (the whole registry,
    hosts gone from the inventory included).
  - This is the only reader of the registry besides the role that writes it. Playbooks hand these
    variables to roles as their declared inputs (for example C(bitnet_mesh_address)), and the
    hetzner_fleet inventory's O(wrinklefree.deployer.hetzner_fleet#inventory:connect_via=wireguard) is a reference to C(mesh_address).
  - The file is read again whenever it changes, so a host that joins the mesh in a run has its
    address in the plays that follow. A missing file means no mesh yet (no variables).
  - Enable it in C(ansible.cfg) (C(vars_plugins_enabled = host_group_vars, wrinklefree.deployer.wireguard_mesh)).
options:
  stage:
    description: When to run; C(all) so that C(ansible-inventory) shows the variables too.
    type: str
    choices: [all, inventory, task]
    default: all
    ini:
      - {key: stage, section: wrinklefree_wireguard_mesh}
    env:
      - name: WF_WIREGUARD_MESH_STAGE
notes:
  - A registry that is not a mapping of host names to mappings (or to an address, the old format)
    is an error naming the file, never an empty mesh.
  - So is an entry whose public key, address, endpoint or interface is not in its strict form
    (44 characters of base64, an IP address, C(HOST:PORT) or C([IPv6]:PORT), an interface name),
    so a doctored file cannot put a newline or a C(wg-quick) directive into any host's configuration.
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# vars_plugins_enabled = host_group_vars, wrinklefree.deployer.wireguard_mesh

# playbooks/bitnet.yml: the registry's entry becomes the role's declared input
- name: Inference layer
  hosts: bitnet
  roles:
    - role: wrinklefree.deployer.bitnet
      vars:
        bitnet_mesh_address: "{{ mesh_address | default('') }}"
        bitnet_mesh_interface: "{{ mesh_interface | default('wg0') }}"
"""

import os

import yaml

from ansible.errors import AnsibleParserError
from ansible.inventory.group import InventoryObjectType
from ansible.plugins.vars import BaseVarsPlugin

from ansible_collections.wrinklefree.deployer.plugins.module_utils.mesh_entry import entry_problems

REGISTRY = "wireguard-addresses.yml"
FIELDS = ("address", "public_key", "endpoint", "interface")


class VarsModule(BaseVarsPlugin):
    """Registry entries as host variables, re-read when the file changes."""

    _cache: dict[str, tuple[tuple[int, int, int], dict]] = {}

    def get_vars(self, loader, path, entities, cache=True):
        super().get_vars(loader, path, entities)
        registry = self._registry(os.path.join(os.path.realpath(path), REGISTRY))
        if not registry:
            return {}
        data = {}
        for entity in entities:
            if entity.base_type is InventoryObjectType.GROUP:
                if entity.name == "all":
                    data["mesh_members"] = registry
            elif entity.name in registry:
                data.update({"mesh_" + field: value for field, value in registry[entity.name].items()})
        return data

    def _registry(self, path):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return {}
        # The role replaces the file (a new inode) under its lock; mtime and size catch an edit.
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
        try:
            with open(path, encoding="utf-8") as handle:
                raw = yaml.safe_load(handle) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise AnsibleParserError(f"wireguard_mesh: cannot read {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise AnsibleParserError(f"wireguard_mesh: {path} must map host names to mesh entries")
        registry = {}
        for host, entry in raw.items():
            if not isinstance(entry, dict):
                entry = {"address": entry}  # the old format: host name to an address
            address = str(entry.get("address") or "").split("/", maxsplit=1)[0]
            if not address:
                raise AnsibleParserError(f"wireguard_mesh: {path}: {host} has no address")
            registry[str(host)] = {field: address if field == "address" else entry[field]
                                   for field in FIELDS if field == "address" or entry.get(field)}
            problems = entry_problems(registry[str(host)])
            if problems:
                raise AnsibleParserError(f"wireguard_mesh: {path}: the entry of {host} is refused: {'; '.join(problems)}")
        self._cache[path] = (stamp, registry)
        return registry
