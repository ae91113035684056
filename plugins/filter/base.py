"""Checks of the base role's inputs and firewall rules that argument_specs cannot express."""

from __future__ import annotations

import json
import re

from ansible_collections.wrinklefree.deployer.plugins.module_utils.inputs import is_ip_network, is_login_name, is_port

_NAME = re.compile(r"^[A-Za-z0-9 ._:/-]+$")


def base_rule_problems(rules, variable):
    """One message per rule of ``rules`` (base_firewall_allow, or a layer's hook rules) whose port,
    name or sources are wrong, naming ``variable``, the rule's index and name. One pass in Python:
    an assert looped over the rules costs a template round per rule and host."""
    problems = []
    for index, rule in enumerate(rules or []):
        name = rule.get("name", "")
        try:
            port_ok = 1 <= int(rule.get("port")) <= 65535
        except (TypeError, ValueError):
            port_ok = False
        bad_sources = [source for source in rule.get("sources") or [] if not is_ip_network(source)]
        if port_ok and not bad_sources and _NAME.match(str(name)):
            continue
        problems.append(
            f"{variable}[{index}] ({name}): port must be 1-65535 (got {rule.get('port')}), name only "
            "letters, digits, spaces and ._:/-, and sources valid IPv4/IPv6 addresses or CIDRs; "
            f"not valid: {bad_sources}")
    return problems


_PUBLIC_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
                         r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+=*( .*)?")
_DNAT_INTERFACE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def base_input_problems(inputs, host, login_user, become_password_given):
    """What is wrong with the base role's inputs (``inputs``: its variables by name) on ``host``,
    which Ansible reaches as ``login_user``: one message each, naming the variable, all at once.
    Besides each value's form, the settings that would lock Ansible out of the host: root login
    forbidden while Ansible connects as root, no way to become root for the admin user, an
    AllowUsers without Ansible's user or the admin user."""
    problems = []
    if not is_port(inputs["base_ssh_port"]):
        problems.append(f"base_ssh_port must be 1-65535 (got {inputs['base_ssh_port']})")
    keys = inputs["base_admin_ssh_public_keys"] or []
    bad_keys = [key for key in keys if not isinstance(key, str) or not _PUBLIC_KEY.fullmatch(key)]
    if not keys or bad_keys:
        problems.append("base_admin_ssh_public_keys must hold at least one OpenSSH public key (ssh-ed25519, ssh-rsa, "
                        f"ecdsa-sha2-*, sk-*) and holds {len(bad_keys)} that are not")
    admin = inputs["base_admin_user"]
    if not is_login_name(admin) or admin == "root":
        problems.append(f"base_admin_user must be a valid login name other than root (got {admin})")
    forwarding = inputs["base_ssh_tcp_forwarding_users"] or []
    if not all(is_login_name(user) for user in forwarding):
        problems.append(f"base_ssh_tcp_forwarding_users must hold login names, got {json.dumps(forwarding, default=str)}")
    interfaces = inputs["base_firewall_dnat_interfaces"] or []
    if not all(isinstance(name, str) and _DNAT_INTERFACE.fullmatch(name) for name in interfaces):
        problems.append("base_firewall_dnat_interfaces must hold interface names (up to 15 characters), "
                        f"got {json.dumps(interfaces, default=str)}")
    reboot = inputs["base_unattended_upgrades_reboot_time"]
    if not isinstance(reboot, str) or not _HH_MM.fullmatch(reboot):
        problems.append(f"base_unattended_upgrades_reboot_time must be HH:MM (got {reboot})")
    problems += base_rule_problems(inputs["base_firewall_allow"], "base_firewall_allow")
    if inputs["base_ssh_permit_root_login"] == "no" and login_user == "root":
        problems.append(f'base_ssh_permit_root_login is "no" but Ansible connects to {host} as root: connect as {admin} '
                        "(ansible_user) first, then forbid root login.")
    # The admin user's password is locked ("!"): without sudo NOPASSWD and a become password, a
    # run connected as that user rewrites its sudo rule and then can no longer become root.
    if not inputs["base_admin_sudo_nopasswd"] and login_user == admin and not become_password_given:
        problems.append(f"base_admin_sudo_nopasswd is false but Ansible connects to {host} as the admin user {admin} "
                        "(ansible_user), whose password is locked: after the sudo rule changes no run could become root. "
                        "Keep base_admin_sudo_nopasswd true, connect as root, or give ansible_become_password.")
    # AllowUsers entries are USER or USER@HOST. Only a plain USER counts: the address Ansible comes
    # from is not known here (a NAT, a bastion, the mesh), so USER@HOST could refuse it.
    allowed = inputs["base_ssh_allow_users"] or []
    missing = [user for user in dict.fromkeys([login_user, admin]) if user not in [a for a in allowed if "@" not in str(a)]]
    if allowed and missing:
        refused = "Ansible (ansible_user)" if login_user in missing else "the admin user (base_admin_user)"
        problems.append(f"base_ssh_allow_users on {host} ({', '.join(map(str, allowed))}) leaves out {' and '.join(missing)}: "
                        f"sshd would refuse {refused}. List {' and '.join(missing)} too, by name alone (USER@HOST does not "
                        "count: whether HOST is where Ansible connects from is not known here).")
    return problems


class FilterModule:
    """The base role's input and rule checks."""

    def filters(self):
        return {"base_rule_problems": base_rule_problems, "base_input_problems": base_input_problems}
