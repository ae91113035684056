"""The README's main job on a lab of its own: site.yml converges 3 real hosts, then a second
run and a check-mode run change nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import adhoc, changed_hosts, output, playbook, run

pytestmark = pytest.mark.lab

# One range check of each role's validate.yml.
VALIDATE_TASKS = ("Base | check base_ssh_port", "WireGuard | check the port", "BitNet | check the profile")


@pytest.fixture(scope="module")
def converged(lab):
    runner = playbook("playbooks/site.yml", lab)
    assert runner.rc == 0, output(runner)[-6000:]
    return runner


def test_first_run_changes_every_host(converged):
    assert sorted(changed_hosts(converged)) == ["wf-test-1", "wf-test-2", "wf-test-3"]


def test_second_run_changes_nothing(lab, converged):
    runner = playbook("playbooks/site.yml", lab)
    assert runner.rc == 0, output(runner)[-6000:]
    assert changed_hosts(runner) == {}, output(runner)[-6000:]


def test_each_validate_task_runs_once_per_host(converged):
    """Preflight runs every role's validate.yml on every host; the roles then skip theirs."""
    runs: dict[tuple[str, str], int] = {}
    for event in converged.events:
        data = event.get("event_data", {})
        if event["event"] == "runner_on_ok" and data.get("task") in VALIDATE_TASKS:
            key = (data["task"], data["host"])
            runs[key] = runs.get(key, 0) + 1
    assert runs == {(task, f"wf-test-{i}"): 1 for task in VALIDATE_TASKS for i in (1, 2, 3)}


def test_check_diff_on_converged_lab_changes_nothing(lab, converged):
    runner = playbook("playbooks/site.yml", lab, cmdline="--check --diff")
    assert runner.rc == 0, output(runner)[-6000:]
    assert changed_hosts(runner) == {}, output(runner)[-6000:]


def test_admin_user_reaches_every_host_over_ssh(lab, converged):
    """The admin account the base role made works for Ansible itself (key login plus sudo)."""
    runner = adhoc("ansible.builtin.command", "id -un", lab, cmdline="--become -e ansible_user=deploy")
    assert runner.rc == 0, output(runner)[-6000:]
    users = {e["event_data"]["host"]: e["event_data"]["res"]["stdout"]
             for e in runner.events if e["event"] == "runner_on_ok"}
    assert users == {"wf-test-1": "root", "wf-test-2": "root", "wf-test-3": "root"}


def test_lab_is_discovered_through_the_fake_hetzner_apis(lab, converged):
    result = run("ansible-inventory", "-i", lab, "--list", stderr=subprocess.PIPE)
    assert "WARNING" not in result.stderr, result.stderr
    listed = json.loads(result.stdout)
    assert sorted(listed["hetzner_cloud"]["hosts"]) == ["wf-test-1", "wf-test-2"]
    assert listed["hetzner_robot"]["hosts"] == ["wf-test-3"]
    assert sorted(listed["base"]["hosts"]) == ["wf-test-1", "wf-test-2", "wf-test-3"]
