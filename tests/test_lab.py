"""The README's main job on the suite's shared fleet (conftest.py): site.yml converges 3 bare
hosts, then a second run and a check-mode run change nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

from wrinklefree_lab.helpers import adhoc, changed_hosts, output, run

# The fleet is one lab: its modules run on one pytest-xdist worker, in file order.
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]

# One range check of each role's validate.yml.
VALIDATE_TASKS = ("Base | check the inputs", "WireGuard | check the inputs", "BitNet | check the inputs")


def hosts(lab) -> list[str]:
    return [lab.host(i) for i in (1, 2, 3)]


def test_first_run_changes_every_host(fleet, fleet_first_run):
    assert sorted(changed_hosts(fleet_first_run)) == hosts(fleet)


def test_second_run_changes_nothing(fleet_second_run):
    assert changed_hosts(fleet_second_run) == {}, output(fleet_second_run)[-6000:]


# Preflight, then the role itself: base's and wireguard's main, bitnet's plan play (whose checks
# its main, in the same run with the same inputs, does not repeat: bitnet_planned).
VALIDATE_RUNS = {"Base | check the inputs": 2, "WireGuard | check the inputs": 2, "BitNet | check the inputs": 2}


def test_every_validate_task_runs_on_every_host_before_any_change(fleet, fleet_first_run):
    """Preflight runs every role's validate entry point on every host before the first change;
    each role runs the same checks again itself, whoever called it (bitnet in its plan play)."""
    runs: dict[tuple[str, str], int] = {}
    first_change = None
    for index, event in enumerate(fleet_first_run.events):
        data = event.get("event_data", {})
        if event["event"] == "runner_on_ok" and data.get("res", {}).get("changed") and first_change is None:
            first_change = index
        if event["event"] == "runner_on_ok" and data.get("task") in VALIDATE_TASKS:
            key = (data["task"], data["host"])
            runs[key] = runs.get(key, 0) + 1
            if runs[key] == 1:
                assert first_change is None, f"{key} first ran after a change"
    assert runs == {(task, host): VALIDATE_RUNS[task] for task in VALIDATE_TASKS for host in hosts(fleet)}


def test_check_diff_on_converged_lab_changes_nothing(fleet_check_run):
    assert changed_hosts(fleet_check_run) == {}, output(fleet_check_run)[-6000:]


def test_admin_user_reaches_every_host_over_ssh(fleet, fleet_first_run):
    """The admin account the base role made works for Ansible itself (key login plus sudo)."""
    runner = adhoc("ansible.builtin.command", "id -un", fleet, cmdline="--become -e ansible_user=deploy")
    assert runner.rc == 0, output(runner)[-6000:]
    users = {e["event_data"]["host"]: e["event_data"]["res"]["stdout"]
             for e in runner.events if e["event"] == "runner_on_ok"}
    assert users == dict.fromkeys(hosts(fleet), "root")


def test_lab_is_discovered_through_the_fake_hetzner_apis(fleet, fleet_first_run):
    result = run("ansible-inventory", "-i", fleet, "--list", stderr=subprocess.PIPE)
    assert "WARNING" not in result.stderr, result.stderr
    listed = json.loads(result.stdout)
    assert sorted(listed["hetzner_cloud"]["hosts"]) == hosts(fleet)[:2]
    assert listed["hetzner_robot"]["hosts"] == hosts(fleet)[2:]
    assert sorted(listed["base"]["hosts"]) == hosts(fleet)
