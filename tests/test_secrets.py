"""Secret hygiene: site.yml's first run (conftest.fleet_first_run, which makes and hands out every
secret) and the runbooks at -vvv, with a log file on, leave no WireGuard
private key, Hetzner API token, Robot password, model servers' or front door's API key or SSH private key in
their output, the log, the fact cache or the inventory; a failing run leaves no retry file
(ansible.cfg turns them off).
(The W&B key through the training runbook: tests/test_sky.py.)"""

from __future__ import annotations

import pytest

from wrinklefree_lab.helpers import FLEET_HOSTS as HOSTS
from wrinklefree_lab.helpers import ROOT, env, output, playbook, sh

# The fleet is one lab: its modules run on one pytest-xdist worker, in file order.
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]


def test_no_secret_in_output_log_fact_cache_or_retry_files(fleet, fleet_first_run, fleet_first_run_dir, monkeypatch):
    # The first run's log and ansible.cfg's jsonfile fact cache, where the runbooks below add theirs
    # (ansible-runner would otherwise put a fact cache in each run's artifacts, unread here).
    log, facts = fleet_first_run_dir / "ansible.log", fleet_first_run_dir / "facts"
    monkeypatch.setattr("wrinklefree_lab.helpers.env", lambda **more: env(ANSIBLE_LOG_PATH=str(log),
                                                          ANSIBLE_CACHE_PLUGIN_CONNECTION=str(facts), **more))
    texts = [output(fleet_first_run)]
    for path, extravars in (("playbooks/runbooks/status.yml", {}),
                            ("playbooks/runbooks/wireguard-health.yml", {}),
                            # A failing run, which would write a retry file were they on.
                            ("playbooks/bitnet.yml", {"bitnet_server_bind": "192.0.2.1"})):
        runner = playbook(path, fleet, extravars=extravars, cmdline="-vvv", fact_cache_type="ansible.cfg")
        texts.append(output(runner))
    assert runner.rc != 0
    assert not list(ROOT.rglob("*.retry")) and not list(fleet.inventory.rglob("*.retry"))

    state = fleet.inventory / ".state" / "hetzner"
    secrets = {f"{host} WireGuard private key": sh(host, "cat /etc/wireguard/wg0.key").stdout.strip() for host in HOSTS}
    secrets.update({name: (state / name).read_text().strip() for name in ("cloud-token", "robot-password")})
    secrets["lab SSH private key body"] = (fleet.inventory / ".state" / "id_ed25519").read_text().splitlines()[1]
    secrets["base servers' API key"] = (fleet.inventory / ".state" / "bitnet-api-key").read_text().strip()
    secrets["front door's client key"] = (fleet.inventory / ".state" / "frontdoor-api-key").read_text().strip()
    assert all(len(value) >= 20 for value in secrets.values()), "a secret to look for is missing"

    places = {f"output of run {i}": text for i, text in enumerate(texts)}
    places["log file"] = log.read_text()
    cached = [path.name for path in facts.iterdir()]
    assert all(any(name.endswith(host) for name in cached) for host in HOSTS), f"facts not cached: {cached}"
    for path in [*facts.rglob("*"), *fleet.inventory.rglob("*.yml")]:
        if path.is_file():
            places[str(path)] = path.read_text(errors="ignore")
    leaks = [f"{name} in {place}" for name, value in secrets.items() for place, text in places.items() if value in text]
    assert not leaks, leaks
