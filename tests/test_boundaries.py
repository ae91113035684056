"""Roles meet only through declared inputs: no role reads another role's files, local facts or
private (``role__``) variables, nor another role's inputs (``role_`` names); no role reads the mesh
registry or a flag that a playbook sets. Playbooks and runbooks call roles only at their
declared entry points."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from wrinklefree_lab.helpers import ROOT, run

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").is_file())
# What an expression reads: Jinja blocks, and the conditions Ansible templates without braces.
JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
BARE = re.compile(r"^\s*-?\s*(?:when|that|until|failed_when|changed_when|loop|with_items)\s*:\s*(.+)$", re.M)
BARE_LIST = re.compile(r"^\s*(?:when|that|failed_when|changed_when)\s*:\s*\n((?:\s+-\s.+\n)+)", re.M)
# Plugins are called by FQCN and belong to the collection, not to a role.
FQCN = re.compile(r"wrinklefree\.deployer\.\w+")


def reads(text: str) -> str:
    """The parts of a task file, template or vars file that Ansible evaluates."""
    parts = JINJA.findall(text) + BARE.findall(text) + BARE_LIST.findall(text)
    return FQCN.sub("", "\n".join(parts))


def role_files(role: str):
    for path in sorted((ROOT / "roles" / role).rglob("*")):
        if path.is_file() and "molecule" not in path.parts and path.suffix in {".yml", ".j2", ".py", ".sh", ".cfg"}:
            yield path


def violations(role: str) -> list[str]:
    others = [r for r in ROLES if r != role]
    found = []
    for path in role_files(role):
        text = path.read_text()
        where = path.relative_to(ROOT)
        evaluated = reads(text) if path.suffix in {".yml", ".j2"} else ""
        for other in others:
            # An identifier of the other role's: its private (other__) or public (other_) names;
            # a role name that prefixes another's (none today) would need a longer match first.
            for name in sorted(set(re.findall(rf"(?<!\w){other}_\w+", evaluated))):
                found.append(f"{where} reads {name} (role {other}'s)")
            if re.search(rf"ansible_local\s*(?:\.|\[\s*['\"]){other}\b", evaluated):
                found.append(f"{where} reads role {other}'s local fact")
            if re.search(rf"roles/{other}\b|\.\./{other}/", text):
                found.append(f"{where} refers to role {other}'s files")
        for name in ("wireguard-addresses", "preflight_"):
            if name in evaluated:
                found.append(f"{where} reads {name} (the vars plugin and the playbooks give what a role needs)")
    return found


@pytest.mark.parametrize("role", ROLES)
def test_a_role_reads_only_its_own_names_and_declared_inputs(role):
    assert violations(role) == []


def test_the_check_finds_a_reach_into_another_role(tmp_path, monkeypatch):
    """The check itself: a planted reach into another role is found, whatever its form."""
    planted = tmp_path / "roles" / "frontdoor" / "tasks"
    planted.mkdir(parents=True)
    for role in ROLES:
        (tmp_path / "roles" / role / "meta").mkdir(parents=True, exist_ok=True)
        (tmp_path / "roles" / role / "meta" / "argument_specs.yml").write_text("argument_specs: {}\n")
    (planted / "main.yml").write_text(yaml.safe_dump([
        {"name": "a", "ansible.builtin.debug": {"msg": "{{ bitnet__bind }} {{ ansible_local.wireguard.address }}"}},
        {"name": "b", "ansible.builtin.debug": {"msg": "x"}, "when": "base_ssh_allow_tcp_forwarding | bool"},
        {"name": "c", "ansible.builtin.include_vars": {"file": "{{ role_path }}/../bitnet/defaults/main.yml"}},
        {"name": "d", "ansible.builtin.debug": {"msg": "{{ x | wrinklefree.deployer.bitnet_server_args }}"}},
        {"name": "e", "ansible.builtin.debug": {"msg": "{{ hostvars[item].wireguard_port }}"}},
    ]))
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    found = violations("frontdoor")
    assert any("bitnet__bind" in f for f in found)
    assert any("role wireguard's local fact" in f for f in found)
    assert any("base_ssh_allow_tcp_forwarding" in f for f in found)
    assert any("role bitnet's files" in f for f in found)
    assert any("wireguard_port" in f for f in found), "another host's input, read through hostvars"
    assert not any("bitnet_server_args" in f for f in found)


def test_playbooks_call_roles_only_at_declared_entry_points():
    entry_points = {role: set(yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"])
                    for role in ROLES}
    calls = []
    for path in sorted((ROOT / "playbooks").rglob("*.yml")) + sorted((ROOT / "roles").rglob("tasks/*.yml")):
        for match in re.finditer(r"name: wrinklefree\.deployer\.(\w+)\n(?:\s+\w+: .*\n)*?\s+tasks_from: (\w+)", path.read_text()):
            calls.append((path.relative_to(ROOT), *match.groups()))
    assert calls, "no tasks_from call found: the pattern no longer matches the playbooks"
    assert [f"{p}: {role}/{entry}" for p, role, entry in calls if entry not in entry_points[role]] == []


def test_no_playbook_reads_a_roles_files():
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}"
             for p in sorted((ROOT / "playbooks").rglob("*.yml"))
             for m in re.finditer(r"roles/\w+/(?:defaults|vars|tasks|files|templates)/[\w./-]+", p.read_text())]
    assert found == []


def code(path: Path) -> str:
    """A file without its comments and, for a plugin, its documentation."""
    text = path.read_text()
    if path.suffix == ".py":
        text = re.sub(r'(?s)(DOCUMENTATION|EXAMPLES|RETURN) = r?""".*?"""', "", text)
    if path.parts[-2:] == ("meta", "argument_specs.yml"):
        return ""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_the_mesh_registry_is_read_only_by_the_vars_plugin_and_written_only_by_its_role():
    readers = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("playbooks/**/*.yml"), *ROOT.glob("plugins/**/*.py"),
                                                       *ROOT.glob("roles/**/*.yml"), *ROOT.glob("roles/**/*.j2")]
                     if "wireguard-addresses" in code(p))
    # The lab's teardown deletes it with the lab; the vars plugin loads it; the wireguard role writes it.
    assert readers == ["playbooks/lab/down.yml", "plugins/vars/wireguard_mesh.py", "roles/wireguard/vars/main.yml"]


def test_roles_and_playbooks_exist_for_every_path_named_in_the_docs():
    named = {m.group(0) for p in [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("roles/*/README.md")]
             for m in re.finditer(r"(?<![\w/.])(?:playbooks|roles|plugins|bench|tests|docs)/[a-z0-9_./@-]+\.(?:yml|py|md|j2)", p.read_text())}
    assert len(named) > 20, "the pattern no longer finds the paths the docs name"
    assert sorted(n for n in named if not (ROOT / n).exists()) == []


def test_one_licence():
    licences = {yaml.safe_load((ROOT / "galaxy.yml").read_text())["license"][0]}
    for meta in ROOT.glob("roles/*/meta/main.yml"):
        licences.add(yaml.safe_load(meta.read_text())["galaxy_info"]["license"])
    assert licences == {"Apache-2.0"}


def test_tests_and_benches_share_the_harness_package_only():
    """Tests import the harness (wrinklefree_lab), never another test module; nothing edits sys.path
    to reach tests/."""
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}"
             for p in [*ROOT.glob("tests/*.py"), *ROOT.glob("tests/wrinklefree_lab/*.py"), *ROOT.glob("bench/*.py")]
             for m in re.finditer(r"^\s*(?:from|import) (?:test_\w+|conftest)\b.*|^.*sys\.path.*\btests\b.*", p.read_text(), re.M)]
    assert found == []


def boolean_inputs() -> set[str]:
    return {name for role in ROLES
            for spec in yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"].values()
            for name, option in spec.get("options", {}).items() if option.get("type") == "bool"}


LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
AS_BOOL = re.compile(r"\s*(?:\|\s*default\([^()]*\)\s*)?\|\s*bool\b")
CONDITIONS = {"when", "that", "until", "failed_when", "changed_when"}


class _TaggedLoader(yaml.SafeLoader):
    """Loads Ansible's tagged values (!unsafe, !vault) as plain scalars."""


_TaggedLoader.add_multi_constructor("!", lambda loader, _, node: loader.construct_scalar(node)
                                    if isinstance(node, yaml.ScalarNode) else None)


def _strings(node, key=None):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield key, node


def expressions(path: Path):
    """What Ansible evaluates in a file, string literals blanked: Jinja blocks, and bare conditions."""
    if path.suffix == ".j2":
        found = [m[2:-2] for m in JINJA.findall(path.read_text())]
    else:
        found = []
        for key, text in _strings(yaml.load(path.read_text(), Loader=_TaggedLoader)):
            blocks = JINJA.findall(text)
            found += [m[2:-2] for m in blocks] if blocks else [text] if key in CONDITIONS else []
    return [LITERAL.sub("''", expr) for expr in found]


def unconverted_booleans(files, root: Path = ROOT) -> list[str]:
    """Each read of a boolean input that skips ``| bool``. Argument specs check the type but do not
    convert it: ``-e base_firewall_allow_ping=false`` reaches a role as the string "false", which
    Jinja's ``if`` takes as true and ``when:`` refuses."""
    names = boolean_inputs()
    found = []
    for path in files:
        for expr in expressions(path):
            for match in re.finditer(r"(?<![\w.'])(" + "|".join(sorted(names)) + r")(?!\w)", expr):
                if not AS_BOOL.match(expr, match.end()):
                    found.append(f"{path.relative_to(root)}: {match.group(1)} without | bool")
    return found


def evaluated_files():
    return [*(f for role in ROLES for f in role_files(role) if f.suffix in {".yml", ".j2"}),
            *ROOT.glob("playbooks/**/*.yml"), *ROOT.glob("sky_tasks/*.j2")]


def test_boolean_inputs_are_read_through_the_bool_filter():
    assert {"base_firewall_allow_ping", "frontdoor_burst", "bitnet_server_mlock"} <= boolean_inputs()
    assert unconverted_booleans(evaluated_files()) == []


def test_the_boolean_check_finds_a_bare_read(tmp_path):
    planted = tmp_path / "x.yml"
    planted.write_text(yaml.safe_dump([
        {"name": "a", "ansible.builtin.debug": {"msg": "{{ 'on' if frontdoor_burst else 'off (frontdoor_burst)' }}"}},
        {"name": "b", "ansible.builtin.debug": {"msg": "x"}, "when": "base_firewall_enabled"},
        {"name": "c", "ansible.builtin.debug": {"msg": "x"}, "when": ["bitnet_server_mlock | default(true) | bool"]},
    ]))
    assert unconverted_booleans([planted], tmp_path) == ["x.yml: frontdoor_burst without | bool", "x.yml: base_firewall_enabled without | bool"]


@pytest.mark.parametrize("value, expected", [("false", "0"), ("no", "0"), ("true", "1")])
def test_a_boolean_given_as_a_string_on_the_command_line_means_what_it_says(value, expected):
    """``-e name=value`` gives a string; the template reads it as the boolean it names."""
    out = run("ansible", "localhost", "-o", "-m", "ansible.builtin.debug", "-a",
              "msg={{ lookup('ansible.builtin.template', 'roles/base/templates/20auto-upgrades.j2') }}",
              "-e", f"base_unattended_upgrades={value}").stdout
    assert f'Unattended-Upgrade \\"{expected}\\"' in out, out


if __name__ == "__main__":  # pragma: no cover
    print("\n".join(v for r in ROLES for v in violations(r)))
