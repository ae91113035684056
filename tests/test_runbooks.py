"""Day-2 runbooks on the suite's shared fleet (conftest.py): the status report and
its exit code, and a rolling upgrade that stops and rolls back when a host's server does not
come up, leaving the other hosts serving."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from wrinklefree_lab.helpers import FLEET_HOSTS as HOSTS
from wrinklefree_lab.helpers import ROOT, fact, http, output, playbook, run, sh

# The fleet is one lab: its modules run on one pytest-xdist worker, in file order.
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]


def model_sha(host: str) -> str:
    return sh(host, "sha256sum /var/lib/bitnet/models/tiny.gguf").stdout.split()[0]


def server_pid(host: str) -> str:
    return sh(host, "systemctl show -p MainPID --value bitnet-server@tiny").stdout.strip()


@pytest.fixture(scope="module")
def converged(fleet, fleet_first_run):
    """The fleet, converged (the modules before this one leave it so)."""
    return fleet


def test_status_reports_every_host_with_cost_per_token(converged, tmp_path):
    report_file = tmp_path / "status.json"
    runner = playbook("playbooks/runbooks/status.yml", converged, extravars={"status_json": str(report_file)})
    assert runner.rc == 0, output(runner)[-4000:]
    report = json.loads(report_file.read_text())
    assert report["healthy"] and report["problems"] == []
    hosts = {h["host"]: h for h in report["hosts"]}
    assert set(hosts) == set(HOSTS)
    for name, host in hosts.items():
        assert host["reachable"] and host["profile"] == fact(name)["profile"]
        assert host["models"][0]["name"] == "tiny" and host["models"][0]["healthy"]
        assert {p["name"] for p in host["peers"]} == set(HOSTS) - {name}
        assert host["decode_tps"] > 0 and host["price_per_hour"] > 0
        assert host["cost_per_1m_at_50"] == pytest.approx(2 * host["cost_per_1m"], rel=0.01)
    # wf-bitnet-3 is the lab's dedicated AX41-NVMe (monthly price / 730, from the table), the others
    # Cloud cx22, priced by the (fake) Cloud API for their location.
    assert hosts[HOSTS[2]]["product"] == "AX41-NVMe" and hosts[HOSTS[0]]["product"] == "cx22"
    assert [hosts[h]["price_source"] for h in HOSTS] == ["api", "api", "table"]
    totals = report["totals"]
    assert totals["healthy"] == 3 and totals["price_per_hour"] == pytest.approx(sum(h["price_per_hour"] for h in hosts.values()), rel=1e-3)
    assert re.search(r"TOTAL +3/3", output(runner))


# A server that is down, and one that runs but that the firewall keeps from the mesh: /health is
# asked from a peer, not over the host's own loopback (which the firewall always lets through).
@pytest.mark.parametrize("host,fault,repair", [
    (HOSTS[2], "systemctl stop bitnet-server@tiny", "systemctl start bitnet-server@tiny"),
    (HOSTS[1], "nft insert rule inet wrinklefree input tcp dport 8080 drop", "systemctl reload nftables"),
], ids=["down", "closed-to-the-mesh"])
def test_status_fails_naming_a_server_the_mesh_cannot_use(converged, host, fault, repair):
    sh(host, fault)
    try:
        runner = playbook("playbooks/runbooks/status.yml", converged)
        assert runner.rc != 0
        assert f"unhealthy: {host}: llama-server tiny unhealthy" in " ".join(output(runner).split())
    finally:
        sh(host, repair)


def test_the_roles_health_check_asks_from_a_mesh_peer(converged):
    """The bitnet role's own check after a run, like the status runbook: a server the firewall
    keeps from the mesh fails its host, asked from the next host of the play."""
    host = HOSTS[1]
    sh(host, "nft insert rule inet wrinklefree input tcp dport 8080 drop")
    try:
        runner = playbook("playbooks/bitnet.yml", converged, extravars={"bitnet_health_timeout": 2})
        text = " ".join(output(runner).split())
        assert runner.stats["failures"] == {host: 1}, text[-3000:]
        assert (f"bitnet-server@tiny did not answer http://{fact(host)['bind']}:8080/health from {HOSTS[2]} "
                "within 2 s") in text
    finally:
        sh(host, "systemctl reload nftables")


def test_rolling_upgrade_stops_and_rolls_back_a_failing_host(converged):
    mirror = converged.inventory / ".state" / "mirror" / "models"
    run("python3", ROOT / "tests/fixtures/bitnet/make_gguf.py", mirror / "tiny2.gguf", "--name", "tiny-2", "--seed", "2")
    new_sha = subprocess.run(["sha256sum", mirror / "tiny2.gguf"], check=True, capture_output=True, text=True).stdout.split()[0]
    old_sha = model_sha(HOSTS[0])
    untouched_pid = server_pid(HOSTS[2])
    new_model = {"name": "tiny", "url": "file:///srv/mirror/models/tiny2.gguf", "sha256": new_sha, "port": 8080,
                 # The second host's new server does not start: its health check fails mid-rollout.
                 "extra_args": f"{{{{ ['--no-such-flag'] if inventory_hostname == '{HOSTS[1]}' else [] }}}}"}
    runner = playbook("playbooks/runbooks/bitnet-upgrade.yml", converged,
                      extravars={"upgrade_models": [new_model], "bitnet_health_timeout": 6})
    text = " ".join(output(runner).split())
    assert runner.rc != 0
    assert f"upgrade failed on {HOSTS[1]} and was rolled back" in text and "unknown argument: --no-such-flag" in text
    assert model_sha(HOSTS[0]) == new_sha
    assert model_sha(HOSTS[1]) == old_sha, "the failed host was not rolled back"
    assert f"rolled back to release {fact(HOSTS[1])['release']}, which serves again" in text
    assert model_sha(HOSTS[2]) == old_sha and server_pid(HOSTS[2]) == untouched_pid, "the rollout went on"
    for host in HOSTS:
        assert http(host, fact(host)["bind"], "/health") == {"status": "ok"}

    new_model.pop("extra_args")
    runner = playbook("playbooks/runbooks/bitnet-upgrade.yml", converged, extravars={"upgrade_models": [new_model]})
    assert runner.rc == 0, output(runner)[-4000:]
    assert {model_sha(host) for host in HOSTS} == {new_sha}
    # The fleet stays on the new model: test_safe_change's runs, next on this fleet, roll it back
    # to the inventory's (each rolling run of bitnet.yml costs minutes under CI's budget).


def test_python_example_of_the_runbook_docs(converged, monkeypatch):
    """The ansible-runner example in docs/runbooks/README.md, run as written, against this lab."""
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "runbooks" / "README.md").read_text(), re.S).group(1)
    namespace: dict = {}
    exec(code.split("\n\nresult = ")[0], namespace)  # the function, without the example call
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")
    result = namespace["runbook"]("status", str(converged.inventory))
    assert result["rc"] == 0 and result["failed"] == [] and result["unreachable"] == []
    assert result["status"]["healthy"] and result["status"]["totals"]["hosts"] == 3
