"""Changes that never take the service down, on the suite's shared fleet under a steady load
through its front door (a bounded client on the lab's addresses, counting every failed request).
The lab's stand-in server takes lab_model_load_ms to load its model, as a real one takes seconds,
answering 503 meanwhile: a restart of every server at once fails requests, a rolling change
(playbooks/bitnet.yml, as site.yml runs it) fails none; a value that only a real start refutes
stops at the first batch, which is rolled back; a controller killed mid-rollout leaves a host
out of rotation, and the next run finishes the change and puts it back. The first run also
brings back the inventory's model, which test_runbooks' upgrade (just before, in file order)
leaves changed; the last leaves the fleet as the inventory says, for the modules after it."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from wrinklefree_lab.helpers import FLEET_HOSTS as HOSTS
from wrinklefree_lab.helpers import kill_playbook, output, playbook, sh, stats
from wrinklefree_lab.loadgen import Result, load

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]

RESTART, BACK = "BitNet | restart the servers", "BitNet | back in rotation"
MARKER = "/var/lib/wrinklefree/bitnet/drained"


@pytest.fixture(scope="module")
def converged(fleet, fleet_first_run):
    """The fleet, converged (the modules before this one leave it so)."""
    return fleet


@contextlib.contextmanager
def steady_load(lab):
    """Four closed-loop clients through the front door while the body runs; yields their Result,
    complete once the body is done."""
    stop, holder = threading.Event(), {}
    thread = threading.Thread(target=lambda: holder.update(result=load(lab.address(1), 8000, clients=4, seconds=900, n_predict=8,
                                                                        key=lab.frontdoor_key, stop=stop)))
    thread.start()
    result = Result()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result.statuses, result.latencies, result.seconds = holder["result"].statuses, holder["result"].latencies, holder["result"].seconds


def env(host: str) -> str:
    return sh(host, "cat /etc/bitnet/tiny.env").stdout


def pid(host: str) -> str:
    return sh(host, "systemctl show -p MainPID --value bitnet-server@tiny").stdout.strip()


def sequence(runner) -> list[tuple[str, str]]:
    """(task, host) of each restart and each return to rotation, in the order they ended."""
    return [(e["event_data"]["task"], e["event_data"]["host"]) for e in runner.events
            if e["event"] == "runner_on_ok" and e["event_data"].get("task") in (RESTART, BACK)]


def assert_all_in_rotation(lab) -> None:
    for _ in range(30):
        if all(stats(lab.host(1))[("base", host)]["status"] == "UP" for host in HOSTS):
            break
        time.sleep(1)
    assert {host: stats(lab.host(1))[("base", host)]["status"] for host in HOSTS} == dict.fromkeys(HOSTS, "UP")
    assert [host for host in HOSTS if sh(host, f"test -e {MARKER}", check=False).returncode == 0] == []


def test_a_changed_argument_rolls_host_by_host_and_fails_no_request(converged):
    with steady_load(converged) as result:
        runner = playbook("playbooks/bitnet.yml", converged, extravars={"bitnet_server_ctx_size": 2048})
    assert runner.rc == 0, output(runner)[-4000:]
    assert len(result.statuses) > 50 and result.failed == 0, sorted(set(result.statuses))
    # One host at a time, each back in rotation before the next restarts.
    assert sequence(runner) == [(task, host) for host in HOSTS for task in (RESTART, BACK)]
    assert all("-c 2048 " in env(host) for host in HOSTS)
    assert_all_in_rotation(converged)

    # The same restart on every host at once (what the role did before): requests fail.
    with steady_load(converged) as result:
        time.sleep(1)
        threads = [threading.Thread(target=sh, args=(host, "systemctl restart bitnet-server@tiny")) for host in HOSTS]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(4)
    assert result.failed > 0, "a restart of every server at once failed no request: the stand-in loads too fast to show it"
    assert_all_in_rotation(converged)


def test_a_value_refuted_at_start_stops_the_first_batch_and_rolls_it_back(converged):
    before = {host: env(host) for host in HOSTS}
    untouched = {host: pid(host) for host in HOSTS[1:]}
    with steady_load(converged) as result:
        runner = playbook("playbooks/bitnet.yml", converged, extravars={
            "bitnet_server_ctx_size": 2048, "bitnet_server_extra_args": ["--no-such-flag"], "bitnet_health_timeout": 6})
    text = " ".join(output(runner).split())
    assert runner.rc != 0
    assert (f"the change failed its checks on {HOSTS[0]}, which was rolled back to its last good configuration" in text
            and "unknown argument: --no-such-flag" in text), text[-3000:]
    assert {host: env(host) for host in HOSTS} == before, "the first batch was not rolled back, or a later one was changed"
    assert {host: pid(host) for host in HOSTS[1:]} == untouched, "the rollout went on past the failed batch"
    assert len(result.statuses) > 20 and result.failed == 0, sorted(set(result.statuses))
    assert_all_in_rotation(converged)


def test_a_rollout_killed_midway_is_finished_by_the_next_run(converged):
    """Back to the inventory's arguments; the controller dies as the second host restarts, which
    it drained. The next run restarts that host if need be, puts it back, and goes on."""
    fired = threading.Event()

    def kill_at_second_host(event: dict) -> bool:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_start" and data.get("task") == RESTART and data.get("host") == HOSTS[1] \
                and not fired.is_set():
            fired.set()
            kill_playbook("playbooks/bitnet.yml", str(converged.inventory))
        return True

    with steady_load(converged) as result:
        runner = playbook("playbooks/bitnet.yml", converged, event_handler=kill_at_second_host)
        assert fired.is_set() and runner.rc != 0
        assert "-c 2048 " not in env(HOSTS[0]) and "-c 2048 " in env(HOSTS[2])
        assert sh(HOSTS[1], f"test -e {MARKER}", check=False).returncode == 0, "the killed run's host was not drained"
        runner = playbook("playbooks/bitnet.yml", converged)
        assert runner.rc == 0, output(runner)[-4000:]
    assert [host for _, host in sequence(runner)][-2:] == [HOSTS[2], HOSTS[2]]
    assert not any("-c 2048 " in env(host) for host in HOSTS)
    assert len(result.statuses) > 50 and result.failed == 0, sorted(set(result.statuses))
    assert_all_in_rotation(converged)
