"""The cloud half on the shared fleet: a burst replica as SkyServe would start it, on a fresh
host playing a cloud VM, and the front door (HAProxy on the fleet's edge host) spilling to it
only what the base layer's slots cannot take, with counters from HAProxy and the servers."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from wrinklefree_lab import cloud_vm
from wrinklefree_lab.helpers import api_key, fact, fetch, metric, output, playbook, sh, stats
from wrinklefree_lab.clients import arrived_as_made, assert_streamed, client, stream_chat
from wrinklefree_lab.loadgen import load

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]

KEY = "burst-key-0123456789abcdef"
N_PREDICT = 16
# The spilled-stream test: plain completions that keep the base layer full, and streams.
LOAD_TOKENS, STREAM_TOKENS = 250, 40


@pytest.fixture(scope="module")
def burst_spec(fleet, fleet_second_run, tmp_path_factory):
    """The spec serve.yml sends to `serve up` on the fleet (recording SDK fake as client), its
    certificate made for the VM's address."""
    return cloud_vm.burst_spec(fleet, tmp_path_factory.mktemp("burst"), KEY, fleet.vm_address(1))


TLS_PORT = 8443


@pytest.fixture(scope="module")
def burst_vm(fleet, burst_spec):
    """The fleet's untouched VM host running the burst task as SkyPilot would, behind a TLS
    endpoint with the service's certificate (SkyServe's load balancer with `service.tls`)."""
    vm = cloud_vm.CloudVM(fleet.inventory, fleet.vm_address(1))
    cloud_vm.start_replica(vm, burst_spec, KEY)
    tls = burst_spec["service"]["tls"]
    cloud_vm.start_tls_endpoint(vm, tls["certfile"], tls["keyfile"], TLS_PORT, 8080)
    return vm


def burst_vars(burst_vm, burst_spec, **extra) -> dict:
    """The burst runbook's variables for the VM's TLS endpoint, verified against its certificate."""
    return {"frontdoor_burst": True, "frontdoor_burst_endpoint": f"https://{burst_vm.address}:{TLS_PORT}",
            "frontdoor_burst_api_key": KEY, "frontdoor_burst_ca_file": burst_spec["service"]["tls"]["certfile"], **extra}


def handshakes(burst_vm) -> int:
    return int(burst_vm.ssh("cat ~/sky_logs/tls-handshakes 2>/dev/null | wc -l").stdout)


def completion(address: str, port: int, key: str = "") -> int:
    request = urllib.request.Request(f"http://{address}:{port}/completion", json.dumps({"prompt": "hi", "n_predict": 2}).encode(),
                                     {"Authorization": f"Bearer {key}"} if key else {})
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_burst_replica_serves_with_its_key_only(burst_vm, burst_spec):
    assert completion(burst_vm.address, 8080, KEY) == 200
    assert completion(burst_vm.address, 8080) == 401
    assert completion(burst_vm.address, 8080, "wrong-key-0123456789") == 401
    # The same model and flags as the base layer, the release that fits this CPU, the key off the command line.
    command = burst_vm.ssh("cat /proc/$(pgrep -f bin/llama-server | head -1)/cmdline | tr '\\0' ' '").stdout
    assert burst_spec["envs"]["SERVER_ARGS"] in command and "--api-key-file" in command and KEY not in command
    best = burst_spec["envs"]["BITNET_RELEASES"].splitlines()[0].split()[0]
    assert burst_vm.ssh("readlink ~/wrinklefree/bitnet/current").stdout.strip().endswith(best)


def test_burst_setup_refuses_a_cpu_without_avx2_and_a_bad_model(burst_vm, burst_spec):
    no_avx2 = {**burst_spec, "setup": burst_spec["setup"].replace("/proc/cpuinfo", "/tmp/cpuinfo-no-avx2", 1)}
    burst_vm.ssh("grep -m1 ^flags /proc/cpuinfo | sed 's/ avx2//' > /tmp/cpuinfo-no-avx2")
    refused = burst_vm.setup(no_avx2, {"BITNET_API_KEY": KEY})
    assert refused.returncode != 0 and "this CPU has no AVX2" in refused.stderr
    bad_model = {**burst_spec, "envs": {**burst_spec["envs"], "MODEL_SHA256": "0" * 64, "MODEL_NAME": "other"}}
    refused = burst_vm.setup(bad_model, {"BITNET_API_KEY": KEY})
    assert refused.returncode != 0 and "expected " + "0" * 64 in refused.stderr


@pytest.fixture(scope="module")
def front_door(fleet, burst_vm, burst_spec):
    """The edge host's front door with burst on, to the VM's TLS endpoint."""
    runner = playbook("playbooks/runbooks/burst.yml", fleet, extravars=burst_vars(burst_vm, burst_spec))
    assert runner.rc == 0, output(runner)[-4000:]
    yield fleet.address(1)
    assert playbook("playbooks/runbooks/burst.yml", fleet, extravars={"frontdoor_burst": False}).rc == 0


def burst_tokens(burst_vm) -> int:
    """Tokens the burst replica has made."""
    return metric(burst_vm.ssh(fetch("http://127.0.0.1:8080/metrics", KEY)).stdout, "llamacpp:tokens_predicted_total")


def counters(fleet, burst_vm) -> dict[str, int]:
    """Completions so far: each base server's and the VM's own count, and HAProxy's per backend."""
    base = 0
    for host in fleet.hosts():
        text = sh(host, fetch(f"http://{fact(host)['bind']}:8080/metrics", api_key(host))).stdout
        base += metric(text, "llamacpp:tokens_predicted_total")
    rows = stats(fleet.host(1))
    return {"base": base // N_PREDICT, "burst": burst_tokens(burst_vm) // N_PREDICT,
            "haproxy_base": int(rows[("base", "BACKEND")]["stot"]), "haproxy_burst": int(rows[("burst", "BACKEND")]["stot"])}


def base_slots(fleet) -> int:
    return sum(fact(host)["models"][0]["parallel"]
               for host in fleet.hosts())


def test_front_door_spills_only_the_excess(fleet, burst_vm, front_door):
    slots, split, tls_before = base_slots(fleet), {}, handshakes(burst_vm)
    for factor in (0.5, 1, 2):
        before = counters(fleet, burst_vm)
        result = load(front_door, 8000, key=fleet.frontdoor_key, clients=max(1, int(slots * factor)), seconds=4, n_predict=N_PREDICT)
        after = counters(fleet, burst_vm)
        delta = {name: after[name] - before[name] for name in before}
        assert result.failed == 0, (factor, result.statuses)
        # What the servers counted is what HAProxy sent them.
        assert delta["base"] == delta["haproxy_base"] and delta["burst"] == delta["haproxy_burst"], delta
        assert delta["base"] + delta["burst"] == len(result.statuses), delta
        split[factor] = delta
    assert split[0.5]["burst"] == 0, split
    # At capacity a client's next request may meet its last one's slot not yet freed: a few spill.
    assert split[1]["burst"] <= 0.05 * split[1]["base"], split
    # At 2x the excess clients spill: the burst backend held about as many requests at once as
    # the base layer has slots, while no base server ever held more than its slots. (How many
    # each side completes depends on the machines' speeds, so it is not asserted.)
    rows = stats(fleet.host(1))
    assert split[2]["burst"] > 0 and int(rows[("burst", "BACKEND")]["smax"]) >= slots // 2, (split, rows[("burst", "BACKEND")])
    for host in fleet.hosts():
        assert int(rows[("base", host)]["smax"]) <= int(rows[("base", host)]["slim"]), rows[("base", host)]
    # The excess went over TLS (HAProxy keeps connections alive: at least one handshake).
    assert handshakes(burst_vm) > tls_before


def test_a_spilled_request_streams_to_an_openai_client(fleet, burst_vm, front_door):
    """At twice the base layer's slots, two of the requests streamed chat completions: the base
    layer is full, so both go to the burst replica (over TLS) and reach their client token by
    token. (The load's own requests are plain completions of LOAD_TOKENS, so the replica's token
    count, modulo that, tells how many streamed tokens it made.)"""
    slots, tokens_before = base_slots(fleet), burst_tokens(burst_vm)
    api = client(f"http://{front_door}:8000/v1", fleet.frontdoor_key)
    loader = threading.Thread(target=load, args=(front_door, 8000),
                              kwargs={"key": fleet.frontdoor_key, "clients": 2 * slots - 2, "seconds": 3, "n_predict": LOAD_TOKENS})
    loader.start()
    time.sleep(1)
    results: list = []
    streams = [threading.Thread(target=lambda: results.append(stream_chat(api, "tiny", STREAM_TOKENS))) for _ in range(2)]
    for thread in streams:
        thread.start()
    for thread in [*streams, loader]:
        thread.join()
    assert len(results) == 2
    for result in results:
        assert_streamed(result, STREAM_TOKENS)
    # A buffering hop bunches both streams; a client the loaded machine did not schedule in time
    # may bunch one by chance.
    assert any(arrived_as_made(result) for result in results), [result.arrivals for result in results]
    assert (burst_tokens(burst_vm) - tokens_before) % LOAD_TOKENS == 2 * STREAM_TOKENS


def test_a_base_server_stopped_under_load_costs_no_request(fleet, burst_vm, front_door):
    holder = {}
    thread = threading.Thread(target=lambda: holder.update(result=load(front_door, 8000, key=fleet.frontdoor_key,
                                                                        clients=base_slots(fleet),
                                                                        seconds=6, n_predict=N_PREDICT)))
    thread.start()
    time.sleep(2)
    sh(fleet.host(2), "systemctl stop bitnet-server@tiny")
    thread.join()
    sh(fleet.host(2), "systemctl start bitnet-server@tiny")
    result = holder["result"]
    assert len(result.statuses) > 0 and result.failed == 0, result.statuses
    for _ in range(30):
        if stats(fleet.host(1))[("base", fleet.host(2))]["status"] == "UP":
            break
        time.sleep(1)
    assert stats(fleet.host(1))[("base", fleet.host(2))]["status"] == "UP"


def test_threshold_change_reloads_hitlessly(fleet, burst_vm, burst_spec, front_door):
    """A request in progress (its body half sent) survives the reload that moves the threshold,
    and the new threshold spills sooner."""
    body = json.dumps({"prompt": "hitless", "n_predict": 4}).encode()
    conn = socket.create_connection((front_door, 8000), timeout=60)
    conn.sendall(b"POST /completion HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (fleet.frontdoor_key.encode(), len(body)) + body[:10])
    runner = playbook("playbooks/runbooks/burst.yml", fleet, extravars=burst_vars(burst_vm, burst_spec, frontdoor_threshold=2))
    assert runner.rc == 0, output(runner)[-4000:]
    conn.sendall(body[10:])
    answer = conn.makefile("rb").read().decode()
    conn.close()
    assert answer.startswith("HTTP/1.1 200"), answer
    before = counters(fleet, burst_vm)
    result = load(front_door, 8000, key=fleet.frontdoor_key, clients=4, seconds=3, n_predict=N_PREDICT)
    after = counters(fleet, burst_vm)
    assert result.failed == 0 and after["burst"] - before["burst"] > 0


def test_status_shows_the_split_and_its_cost(fleet, burst_vm, front_door, tmp_path):
    report = tmp_path / "status.json"
    runner = playbook("playbooks/runbooks/status.yml", fleet, extravars={"status_json": str(report)})
    assert runner.rc == 0, output(runner)[-4000:]
    status = json.loads(report.read_text())
    rows = stats(fleet.host(1))
    split = status["split"]
    assert split["base"] == int(rows[("base", "BACKEND")]["stot"]) and split["burst"] == int(rows[("burst", "BACKEND")]["stot"])
    assert split["burst"] > 0 and 0 < split["burst_share"] < 1
    totals = status["totals"]
    assert totals["cost_per_1m_base_only"] == totals["cost_per_1m"] and totals["cost_per_1m_burst"] > 0
    low, high = sorted([totals["cost_per_1m_base_only"], totals["cost_per_1m_burst"]])
    assert low <= totals["cost_per_1m_at_split"] <= high
    assert "front door:" in output(runner) and "burst" in output(runner)


def test_front_door_sends_nothing_to_a_burst_endpoint_it_cannot_verify(fleet, burst_vm, burst_spec, front_door, tmp_path):
    """With a CA that did not sign the endpoint's certificate, spilled requests fail at the
    handshake (503 to the client) and the replica sees none of them, nor the key."""
    cloud_vm.self_signed(tmp_path, burst_vm.address)
    runner = playbook("playbooks/runbooks/burst.yml", fleet,
                      extravars=burst_vars(burst_vm, burst_spec, frontdoor_burst_ca_file=str(tmp_path / "cert.pem")))
    assert runner.rc == 0, output(runner)[-4000:]
    before, tls_before = counters(fleet, burst_vm), handshakes(burst_vm)
    result = load(front_door, 8000, key=fleet.frontdoor_key, clients=2 * base_slots(fleet), seconds=3, n_predict=N_PREDICT)
    after = counters(fleet, burst_vm)
    assert result.failed > 0 and set(result.statuses) <= {200, 503}, result.statuses
    assert after["burst"] == before["burst"] and handshakes(burst_vm) == tls_before


def test_front_door_limits_each_client_address(fleet, burst_vm, burst_spec, front_door):
    """frontdoor_rate_limit: 5 requests per 10 s from one address, then 429 without asking a server."""
    runner = playbook("playbooks/runbooks/burst.yml", fleet, extravars=burst_vars(burst_vm, burst_spec, frontdoor_rate_limit=5))
    assert runner.rc == 0, output(runner)[-4000:]
    before = counters(fleet, burst_vm)
    result = load(front_door, 8000, key=fleet.frontdoor_key, clients=1, seconds=3, n_predict=N_PREDICT)
    after = counters(fleet, burst_vm)
    assert result.statuses.count(200) == 5 and set(result.statuses) == {200, 429}, result.statuses
    assert (after["base"] + after["burst"]) - (before["base"] + before["burst"]) == 5
