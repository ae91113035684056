"""The WireGuard registry on the controller under concurrent runs: each run registers the hosts
of its --limit; runs started together take turns on the registry lock, so none of them drops the
hosts the others wrote (without the lock, the last writer would)."""

from __future__ import annotations

import subprocess

import yaml

from wrinklefree_lab.helpers import ROOT, env

HOSTS = [f"h{i}" for i in range(8)]


def test_concurrent_runs_lose_no_host(tmp_path):
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"wireguard": {"hosts": dict.fromkeys(HOSTS)}}}}))
    runs = [subprocess.Popen(["ansible-playbook", "-i", str(tmp_path / "hosts.yml"), "--limit", host,
                              str(ROOT / "tests/playbooks/wireguard_registry.yml")],
                             cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for host in HOSTS]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), "\n".join(outputs)[-4000:]
    registry = yaml.safe_load((tmp_path / "wireguard-addresses.yml").read_text())
    assert sorted(registry) == HOSTS
    # Addresses by name order, each once: every run saw the others' hosts.
    assert len({entry["address"] for entry in registry.values()}) == len(HOSTS)
    assert not (tmp_path / "wireguard-addresses.yml.lock").exists()
