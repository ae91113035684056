"""Fault injection, each fault made while a playbook runs (site.yml, or the layer's own playbook
where the fault is in one layer; driven through ansible-runner: its event handler injects the
fault when a task starts on a host, and the results are read from its stats and events). Every
fault is survived or reported, and never leaves a host half-configured: no WireGuard config
without its private key, no llama-server unit without its binary, no sshd config that fails
`sshd -t` or shuts Ansible out. The tests run in order on the side lab's bare hosts
(conftest.py), and leave it converged for test_node_pool."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from wrinklefree_lab.helpers import SIDE_PREFIX, adhoc, at_task_start, changed_hosts, kill_playbook, output, playbook, run, sh

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("side")]

HOSTS = tuple(f"{SIDE_PREFIX}{index}" for index in (1, 2, 3))
SAVED_SOURCES = "/root/sources.list.good"

# What a run cut short must never leave behind, checked from inside the host.
INVARIANTS = r"""
if [ -e /etc/wireguard/wg0.conf ] && [ ! -s /etc/wireguard/wg0.key ]; then
  echo "wg0.conf without its private key"
fi
if [ -e /etc/systemd/system/bitnet-server@.service ] && [ ! -x /opt/bitnet/current/bin/llama-server ]; then
  echo "a bitnet-server unit whose llama-server binary is missing"
fi
sshd -t 2>&1 | sed 's/^/sshd -t: /'
"""


def assert_whole(lab, hosts=HOSTS) -> None:
    """No host is half-configured, and Ansible still logs in to every one."""
    problems = {host: sh(host, INVARIANTS).stdout.strip() for host in hosts}
    assert not any(problems.values()), problems
    runner = adhoc("ansible.builtin.ping", "", lab, pattern=",".join(hosts))
    assert runner.rc == 0, output(runner)[-4000:]


def serving(host: str) -> bool:
    return sh(host, "systemctl is-active bitnet-server@tiny", check=False).stdout.strip() == "active"


def failed_tasks(runner) -> dict[str, str]:
    return {e["event_data"]["host"]: e["event_data"]["task"] for e in runner.events
            if e["event"] == "runner_on_failed" and not e["event_data"].get("ignore_errors")}


def restart(lab, host: str) -> None:
    """Start a killed host and wait until Ansible reaches it again."""
    run("podman", "start", host)
    runner = adhoc("ansible.builtin.wait_for_connection", "timeout=120", lab, pattern=host)
    diagnosis = sh(host, "ip -br addr; ip neigh; systemctl is-active ssh; nft list ruleset", check=False).stdout
    assert runner.rc == 0, output(runner)[-3000:] + diagnosis + run("ip", "neigh").stdout


def test_apt_failing_on_one_host_and_another_stopped_mid_play_leave_the_third_serving(fault_lab):
    """Two faults in the side lab's first run, the cost of one: the third host cannot reach its
    package source (failed, named by its task), and the second dies as its WireGuard key is
    being made (unreachable). The play goes on for the first, which serves; a rerun once both
    are repaired converges them."""
    # The host's only package source is a closed port: apt cannot update or download.
    sh(HOSTS[2], f"cp /etc/apt/sources.list {SAVED_SOURCES} && echo 'deb http://127.0.0.1:9/debian bookworm main'"
                 " > /etc/apt/sources.list")
    handler = at_task_start("WireGuard | private key", lambda _host: run("podman", "kill", HOSTS[1]))
    runner = playbook("playbooks/site.yml", fault_lab, event_handler=handler)
    assert handler.fired.is_set()
    assert runner.rc != 0
    assert failed_tasks(runner) == {HOSTS[2]: "Base | Python bindings of apt, for the apt module"}, output(runner)[-4000:]
    assert set(runner.stats["dark"]) == {HOSTS[1]}, output(runner)[-4000:]
    # The play went on for the first host: it reached the end and serves.
    assert HOSTS[0] in runner.stats["ok"] and serving(HOSTS[0])
    assert_whole(fault_lab, hosts=(HOSTS[0], HOSTS[2]))

    sh(HOSTS[2], f"mv {SAVED_SOURCES} /etc/apt/sources.list")
    restart(fault_lab, HOSTS[1])
    assert_whole(fault_lab)
    runner = playbook("playbooks/site.yml", fault_lab)
    assert runner.rc == 0, output(runner)[-6000:]
    assert {HOSTS[1], HOSTS[2]} <= set(changed_hosts(runner))
    assert all(serving(host) for host in HOSTS)
    assert_whole(fault_lab)


def test_hetzner_5xx_during_discovery(fault_lab):
    faults = fault_lab.inventory / ".state" / "hetzner" / "faults.json"
    # Passing errors are retried: the run converges as if nothing happened.
    # preflight.yml: a run over the whole inventory that changes nothing (discovery is the same for every playbook).
    faults.write_text(json.dumps({"cloud": ["500", "502"], "robot": ["500"]}))
    runner = playbook("playbooks/preflight.yml", fault_lab)
    assert runner.rc == 0, output(runner)[-6000:]
    assert changed_hosts(runner) == {}
    assert not faults.exists(), "the fake was not asked"

    # An API that keeps failing fails the run with its reason, before any host is contacted.
    faults.write_text(json.dumps({"cloud": ["500"] * 20}))
    runner = playbook("playbooks/preflight.yml", fault_lab)
    assert runner.rc != 0
    text = output(runner)
    assert "Hetzner Cloud API: GET /servers page 1 still failing" in text and "HTTP 500 service_error" in text, text[-4000:]
    assert not [e for e in runner.events if e["event"].startswith("runner_on_")]
    faults.write_text(json.dumps({"cloud": [], "robot": []}))


def test_ssh_dropped_during_the_build_leaves_the_old_release_serving(fault_lab):
    # A changed build input (a new release key), so the next run compiles.
    extravars = {"bitnet_cmake_extra_args": ["-DWF_FAULT_TEST=ON"]}
    before = {host: sh(host, "readlink /opt/bitnet/current").stdout.strip() for host in HOSTS}

    def drop(host: str) -> None:
        # Once the compiler runs, end the host's SSH sessions and their processes (a hang-up).
        # The host watches for it itself, from the configure step on, every 20 ms for up to 2
        # minutes: a watcher on this side (a `podman exec` per look) can miss a compile that a
        # fast or a busy machine ends first. The brackets keep the patterns from matching the
        # shell that runs them.
        watch = ("for i in $(seq 6000); do if pgrep -f '[c]make --build' >/dev/null; then "
                 "pkill -KILL -f '[s]shd: [^ ]+@'; pkill -KILL -f '[c]make --build|[n]inja|[c]lang'; exit 0; fi; "
                 "sleep 0.02; done; exit 1")
        threading.Thread(target=sh, args=(host, watch), kwargs={"check": False}, daemon=True).start()

    # The inference layer's playbook: the build is its second play.
    handler = at_task_start("BitNet | configure", drop)
    runner = playbook("playbooks/bitnet.yml", fault_lab, extravars=extravars, event_handler=handler)
    assert handler.fired.is_set()
    assert runner.rc != 0
    builder = list(runner.stats["dark"])
    assert len(builder) == 1, output(runner)[-6000:]
    # The first batch of the rollout (one of the others, serving) says whose build failed, and the
    # rollout stops there; every host keeps serving the release it had.
    failures = [e["event_data"] for e in runner.events if e["event"] == "runner_on_failed"]
    assert len(failures) == 1 and failures[0]["host"] in set(HOSTS) - set(builder), output(runner)[-6000:]
    assert f"its build on {builder[0]} failed" in failures[0]["res"]["msg"]
    assert {host: sh(host, "readlink /opt/bitnet/current").stdout.strip() for host in HOSTS} == before
    assert all(serving(host) for host in HOSTS)
    assert_whole(fault_lab)

    runner = playbook("playbooks/bitnet.yml", fault_lab, extravars=extravars)
    assert runner.rc == 0, output(runner)[-6000:]
    after = {host: sh(host, "readlink /opt/bitnet/current").stdout.strip() for host in HOSTS}
    assert len(set(after.values())) == 1 and set(after.values()) != set(before.values())
    assert all(serving(host) for host in HOSTS)
    assert_whole(fault_lab)


def test_a_reload_lost_with_the_controller_is_made_by_the_next_run(fault_lab):
    """The controller dies after the firewall file is written and before its handler: the next
    run finds the file unchanged, yet loads it, because what was loaded last is recorded."""
    host, probe = HOSTS[1], {"base_firewall_allow": [{"name": "probe", "port": 9999}]}
    # A converged host, its ruleset running (on a bare one, starting nftables loads the new file).
    runner = playbook("playbooks/base.yml", fault_lab, cmdline=f"--limit {host}")
    assert runner.rc == 0 and sh(host, "systemctl is-active nftables").stdout.strip() == "active", output(runner)[-3000:]
    runner = playbook("playbooks/base.yml", fault_lab, extravars=probe, cmdline=f"--limit {host}",
                      event_handler=at_task_start("Base | unattended-upgrades schedule",
                                                  lambda _: kill_playbook(f"--limit {host}", str(fault_lab.inventory))))
    assert runner.status == "failed" and runner.rc != 0, (runner.status, runner.rc)
    assert "dport 9999" in sh(host, "cat /etc/nftables.conf").stdout
    assert "dport 9999" not in sh(host, "nft list chain inet wrinklefree input").stdout
    runner = playbook("playbooks/base.yml", fault_lab, extravars=probe, cmdline=f"--limit {host}")
    assert runner.rc == 0 and "dport 9999" in sh(host, "nft list chain inet wrinklefree input").stdout
    runner = playbook("playbooks/base.yml", fault_lab, cmdline=f"--limit {host}")
    assert runner.rc == 0 and "dport 9999" not in sh(host, "nft list chain inet wrinklefree input").stdout
    assert_whole(fault_lab)


def reachable(lab, host: str, port: int) -> bool:
    """sshd's banner on `port` of the host, over a new TCP connection (Ansible would reuse a
    persisting SSH master connection on a port that no longer takes new ones)."""
    try:
        with socket.create_connection((lab.address(HOSTS.index(host) + 1), port), timeout=3) as conn:
            return conn.recv(7) == b"SSH-2.0"
    except OSError:
        return False


def test_ssh_port_moves_under_socket_activation_without_a_lockout(fault_lab):
    """Ubuntu 24.04's sshd, reproduced on Debian 12: ssh.socket in place of ssh.service, which
    listens where its unit says whatever sshd_config holds. The port moves and back, each time
    with both ports open until Ansible has logged in on the new one; with the inventory updated
    as the run says, a rerun changes nothing."""
    host = HOSTS[0]
    host_vars = fault_lab.inventory / "host_vars"
    host_vars.mkdir(exist_ok=True)
    sh(host, "systemctl disable --now ssh.service && systemctl enable --now ssh.socket")
    try:
        runner = playbook("playbooks/base.yml", fault_lab, extravars={"base_ssh_port": 2222}, cmdline=f"--limit {host}")
        assert runner.rc == 0, output(runner)[-3000:] + sh(host, "journalctl -u ssh.socket -n 20 --no-pager", check=False).stdout
        assert "set ansible_port: 2222" in " ".join(output(runner).split())
        listening = sh(host, "ss -Hltn | awk '{print $4}'").stdout.split()
        assert any(a.endswith(":2222") for a in listening) and not any(a.endswith(":22") for a in listening), listening
        assert "tcp dport 2222 accept" in sh(host, "nft list chain inet wrinklefree input").stdout
        assert reachable(fault_lab, host, 2222) and not reachable(fault_lab, host, 22)
        (host_vars / f"{host}.yml").write_text("ansible_port: 2222\n")
        again = playbook("playbooks/base.yml", fault_lab, extravars={"base_ssh_port": 2222}, cmdline=f"--limit {host}")
        assert again.rc == 0 and changed_hosts(again) == {}, output(again)[-4000:]
        # Back to 22 (the default), from 2222.
        back = playbook("playbooks/base.yml", fault_lab, cmdline=f"--limit {host}")
        assert back.rc == 0, output(back)[-4000:]
        assert reachable(fault_lab, host, 22) and not reachable(fault_lab, host, 2222)
    finally:
        (host_vars / f"{host}.yml").unlink(missing_ok=True)
        sh(host, "systemctl disable --now ssh.socket; systemctl enable --now ssh.service", check=False)
    assert_whole(fault_lab)
