"""Applications on the fleet: the official `openai` client through the lab's front door (HAProxy on
the fleet's edge host, with its client key), and what a newcomer is shown to try: bin/wf lab's
curl (playbooks/lab/try-it.yml) and the README's snippet, run as printed. Streams spilled to the
burst layer: test_spillover.py. The API's shapes in detail, on the stand-in alone: test_standin.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from wrinklefree_lab.clients import assert_streams_as_made, check_api, client, stream_chat
from wrinklefree_lab.helpers import ROOT, api_key, env, fact, fetch, output, playbook, sh, stats

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]


@pytest.fixture(scope="module")
def endpoint(fleet, fleet_second_run) -> str:
    """The front door's endpoint as its local fact records it."""
    return json.loads(sh(fleet.host(1), "cat /etc/ansible/facts.d/frontdoor.fact").stdout)["endpoint"]


@pytest.fixture(scope="module")
def api(fleet, endpoint) -> openai.OpenAI:
    return client(endpoint + "/v1", fleet.frontdoor_key)


def test_the_front_door_records_its_endpoint(fleet, endpoint):
    assert endpoint == f"http://{fleet.address(1)}:8000"


def test_chat_completion_and_models_through_the_front_door(api):
    check_api(api, "tiny")
    # /v1/completions answers llama.cpp's own shape at the pinned commit (docs/clients.md).
    answer = api.completions.create(model="tiny", prompt="Hello", max_tokens=4)
    assert answer.model_extra["content"] and answer.model_extra["tokens_predicted"] == 4


def test_a_stream_reaches_the_client_as_it_is_made(api):
    assert_streams_as_made(lambda: stream_chat(api, "tiny", 40), 40)


def test_a_wrong_or_missing_key_is_refused_by_the_front_door(fleet, endpoint):
    with pytest.raises(openai.AuthenticationError) as refused:
        client(endpoint + "/v1", "wrong-key-0123456789abcdef").models.list()
    assert refused.value.body == {"code": 401, "message": "Invalid API Key", "type": "authentication_error"}
    request = urllib.request.Request(endpoint + "/v1/chat/completions", b'{"messages": []}', {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(request, timeout=10)
    assert missing.value.code == 401 and json.loads(missing.value.read())["error"]["type"] == "authentication_error"


def kill_the_serving_server(probes: dict[str, str]) -> list[str]:
    """SIGKILL to the server of each base host with a request in progress, every host asked at once
    (one command each, its metrics URL and key read beforehand): a stream of the stand-in lasts
    seconds, and under a loaded machine's podman exec a host-by-host search outlasted it."""
    def probe(host: str) -> bool:
        command = (f"{probes[host]} | grep -q '^llamacpp:requests_processing [1-9]' && "
                   "systemctl kill --signal=KILL bitnet-server@tiny && echo killed")
        return sh(host, command, check=False).stdout.strip() == "killed"

    with ThreadPoolExecutor(len(probes)) as pool:
        return [host for host, killed in zip(probes, pool.map(probe, probes)) if killed]


def test_a_stream_whose_server_dies_is_an_error_for_the_client(fleet, api):
    """Once an answer has begun it cannot be retried elsewhere: the front door cuts the client's
    connection short of the chunked answer's end, and the client raises rather than taking the
    text so far for a whole answer. The server comes back (systemd) and into rotation."""
    probes = {host: fetch(f"http://{fact(host)['bind']}:8080/metrics", api_key(host)) for host in fleet.hosts()}
    killed, chunks = [], 0
    with pytest.raises(openai.APIConnectionError):
        for _ in api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=1000, stream=True):
            chunks += 1
            if chunks == 3:
                killed = kill_the_serving_server(probes)
    assert len(killed) == 1 and chunks >= 3, (killed, chunks)
    # Out of rotation first (the front door's checks see the crash), then back in once systemd
    # has restarted it: UP, or UP with a check in progress ("UP 1/2").
    def status() -> str:
        return stats(fleet.host(1))[("base", killed[0])]["status"]
    deadline = time.monotonic() + 30
    while status().startswith("UP") and time.monotonic() < deadline:
        time.sleep(0.5)
    deadline = time.monotonic() + 120
    while not status().startswith("UP") and time.monotonic() < deadline:
        time.sleep(1)
    assert status().startswith("UP"), sh(killed[0], "journalctl -u bitnet-server@tiny -n 20 --no-pager", check=False).stdout


def test_bin_wf_labs_curl_works_as_printed(fleet, endpoint):
    runner = playbook("playbooks/lab/try-it.yml", fleet)
    assert runner.rc == 0, output(runner)[-3000:]
    text = (fleet.inventory / ".state" / "try-it.txt").read_text()
    assert f"{endpoint}/v1" in text and str(fleet.inventory / ".state" / "frontdoor-api-key") in text
    curl = re.search(r"^curl .*?'$", text, re.S | re.M).group(0)
    answer = json.loads(subprocess.run(["bash", "-c", curl], check=True, capture_output=True, text=True).stdout)
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"]
    export = next(line for line in text.splitlines() if line.startswith("export OPENAI_BASE_URL="))
    shown = subprocess.run(["bash", "-c", f"{export}; echo $OPENAI_BASE_URL $OPENAI_API_KEY"], check=True,
                           capture_output=True, text=True).stdout.split()
    assert shown == [f"{endpoint}/v1", fleet.frontdoor_key]


def test_the_readmes_snippet_runs_as_written(fleet, endpoint):
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"## Try it\n.*?```python\n(.*?)```", readme, re.S).group(1)
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=120,
                          env=env(OPENAI_BASE_URL=f"{endpoint}/v1", OPENAI_API_KEY=fleet.frontdoor_key))
    assert done.returncode == 0 and len(done.stdout.split()) >= 3, done.stderr


def test_a_client_key_written_but_never_loaded_is_loaded_by_the_next_run(fleet, endpoint):
    """The controller dies after the front door's key list is written and before HAProxy's
    reload (here: the file written as that run would have): the next run finds the file
    unchanged, yet reloads, because what HAProxy loaded last is recorded."""
    rotated = "rotated-client-key-0123456789"
    keys = [fleet.frontdoor_key, rotated]
    sh(fleet.host(1), "printf 'Bearer %s\\n' " + " ".join(keys) + " > /etc/haproxy/frontdoor/api-keys.lst")
    with pytest.raises(openai.AuthenticationError):
        client(endpoint + "/v1", rotated).models.list()
    runner = playbook("playbooks/frontdoor.yml", fleet, extravars={"frontdoor_api_keys": keys})
    assert runner.rc == 0, output(runner)[-3000:]
    assert [m.id for m in client(endpoint + "/v1", rotated).models.list()] == ["tiny"]
    runner = playbook("playbooks/frontdoor.yml", fleet)
    assert runner.rc == 0, output(runner)[-3000:]
    with pytest.raises(openai.AuthenticationError):
        client(endpoint + "/v1", rotated).models.list()
