"""The fixture tree's llama-server answers clients as upstream's does at the pinned commit
(llama.cpp 406a5036, examples/server): the routes, JSON shapes and status codes an OpenAI client
meets, streaming, keys, loading. Built and run on this machine, no lab: the lab's tests
(test_clients.py) take the same API through the front door."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
from wrinklefree_lab import standin
from wrinklefree_lab.clients import assert_streams_as_made, client, stream_chat

KEY = "standin-key-0123456789"


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    return standin.build(tmp_path_factory.mktemp("standin"))


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return standin.model(tmp_path_factory.mktemp("model") / "tiny.gguf")


@pytest.fixture
def server(binary, gguf):
    """The stand-in as the role starts it: two slots, metrics, a key, the model's fleet name."""
    running = standin.Server(binary, gguf, "-np", "2", "--metrics", "--api-key", KEY, "--alias", "tiny")
    wait_loaded(running.url)
    yield running
    running.stop()


@pytest.fixture
def api(server):
    return client(server.url + "/v1", KEY)


def raw(url: str, body: dict | str | None = None, key: str = KEY) -> tuple[int, str, str]:
    """(status, content type, body) of GET `url`, or POST when there is a body."""
    data = (body if isinstance(body, str) else json.dumps(body)).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def wait_loaded(url: str) -> None:
    for _ in range(300):
        if raw(url + "/health")[0] == 200:
            return
        time.sleep(0.05)
    raise AssertionError("the stand-in did not load")


def test_health_answers_503_while_the_model_loads(binary, tmp_path):
    """Listening comes before the model (as upstream): every request, /health too, gets 503 in
    upstream's error shape until the model's load time (make_gguf.py --load-ms) has passed."""
    loading = standin.Server(binary, standin.model(tmp_path / "slow.gguf", load_ms=3000))
    try:
        status, kind, body = raw(loading.url + "/health")
        assert (status, kind) == (503, "application/json; charset=utf-8")
        assert json.loads(body) == {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        assert raw(loading.url + "/v1/models")[0] == 503
        wait_loaded(loading.url)
        assert json.loads(raw(loading.url + "/health")[2]) == {"status": "ok"}
    finally:
        loading.stop()


def test_chat_completion_in_openais_shape(api):
    answer = api.chat.completions.create(model="my-app", messages=[{"role": "system", "content": "Be brief."},
                                                                   {"role": "user", "content": "Hello"}], max_tokens=5)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    # As upstream, the model named in the request is echoed; finish_reason is "length" at max_tokens.
    assert answer.model == "my-app" and answer.choices[0].finish_reason == "length"
    assert answer.choices[0].message.role == "assistant" and len(answer.choices[0].message.content.split()) >= 5
    assert answer.usage.completion_tokens == 5 and answer.usage.total_tokens == 5 + answer.usage.prompt_tokens


def test_completion_in_llama_cpps_own_shape(api):
    """/v1/completions at the pinned commit answers llama.cpp's own shape (content, not choices):
    the openai client keeps it as extra fields. Chat completions are the OpenAI-shaped route."""
    answer = api.completions.create(model="tiny", prompt="The capital of France", max_tokens=4)
    assert answer.choices is None
    assert answer.model_extra["content"].strip() and answer.model_extra["tokens_predicted"] == 4
    assert answer.model == "tiny" and answer.model_extra["stop"] is True


def test_streamed_chat_arrives_token_by_token(api):
    assert_streams_as_made(lambda: stream_chat(api, "tiny", 40), 40)


def test_stream_on_the_wire(server):
    """Server-sent events in a chunked response: chat ends with data: [DONE]; the native route
    ends with its final result (stop: true) and no [DONE], as upstream."""
    status, kind, body = raw(server.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}],
                                                                    "max_tokens": 3, "stream": True})
    events = [line for line in body.split("\n\n") if line]
    assert (status, kind) == (200, "text/event-stream") and events[-1] == "data: [DONE]"
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"} and "usage" in chunks[-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    status, kind, body = raw(server.url + "/completion", {"prompt": "hi", "n_predict": 3, "stream": True})
    results = [json.loads(line.removeprefix("data: ")) for line in body.split("\n\n") if line]
    assert [r["stop"] for r in results] == [False, False, False, True] and results[-1]["tokens_predicted"] == 3


def test_keys_and_public_routes(server, api):
    with pytest.raises(openai.AuthenticationError) as refused:
        client(server.url + "/v1", "wrong-key-0123456789").chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 401 and refused.value.body["message"] == "Invalid API Key"
    # Only "Authorization: Bearer KEY" counts.
    request = urllib.request.Request(server.url + "/props", headers={"X-Api-Key": KEY})
    with pytest.raises(urllib.error.HTTPError) as no_bearer:
        urllib.request.urlopen(request, timeout=10)
    assert no_bearer.value.code == 401
    # /health and the model list need no key; their model is the fleet's name (--alias).
    assert raw(server.url + "/health", key="")[0] == 200
    models = json.loads(raw(server.url + "/v1/models", key="")[2])
    assert [m["id"] for m in models["data"]] == ["tiny"] and models["object"] == "list"
    assert [m.id for m in api.models.list()] == ["tiny"]


def test_errors_in_upstreams_shape(server, api):
    with pytest.raises(openai.BadRequestError) as null_prompt:
        api.completions.create(model="tiny", prompt=None)
    assert null_prompt.value.body == {"code": 400, "type": "invalid_request_error",
                                      "message": '"prompt" must be a string, an array of strings or an array of integers'}
    status, _, body = raw(server.url + "/v1/completions", {"n_predict": 1})
    assert (status, json.loads(body)["error"]["message"]) == (400, '"prompt" must be provided')
    with pytest.raises(openai.InternalServerError) as two:
        api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], n=2)
    assert two.value.body["message"] == "Only one completion choice is allowed"
    assert raw(server.url + "/v1/chat/completions", "{not json")[0] == 500
    assert json.loads(raw(server.url + "/nowhere")[2])["error"] == {"code": 404, "message": "File Not Found", "type": "not_found_error"}
    # Without --embeddings or --slots those routes are "not supported" (501).
    with pytest.raises(openai.InternalServerError) as embeddings:
        api.embeddings.create(model="tiny", input="hi")
    assert embeddings.value.status_code == 501 and embeddings.value.body["type"] == "not_supported_error"
    assert raw(server.url + "/slots")[0] == 501


@pytest.mark.parametrize("body", ['{"messages": [{"role": "user"}, {}, 3, null]}', '{"messages": "hi"}', '{"messages": {}}',
                                  '{"prompt": [1, 2]}', '{"prompt": []}', '{"prompt": ["a", "b"]}', '{"prompt": {"x": 1}}',
                                  '{"prompt": "\\u00e9\\u12", "max_tokens": -5}', '{"prompt": "x", "n_predict": "9"}',
                                  '[' * 200 + ']' * 200, '"', '{"a":}', ''])
def test_odd_bodies_get_an_answer_and_the_server_lives(server, body):
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        status, _, answer = raw(server.url + path, body)
        assert status in (200, 400, 500, 501) and (status == 200 or "error" in json.loads(answer)), (path, answer)
    assert raw(server.url + "/health")[0] == 200


def test_embeddings_server(binary, gguf):
    """With --embeddings the server embeds (unit vectors, OpenAI's list shape) and refuses completions."""
    embedder = standin.Server(binary, gguf, "--embeddings", "--slots")
    try:
        wait_loaded(embedder.url)
        api = client(embedder.url + "/v1", "unused")
        answer = api.embeddings.create(model="e", input=["one", "two"])
        assert [d.index for d in answer.data] == [0, 1] and answer.model == "e"
        for datum in answer.data:
            assert abs(sum(x * x for x in datum.embedding) - 1) < 1e-3
        assert answer.data[0].embedding != answer.data[1].embedding
        with pytest.raises(openai.InternalServerError) as refused:
            api.chat.completions.create(model="e", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 501
        slots = json.loads(raw(embedder.url + "/slots")[2])
        assert [slot["id"] for slot in slots] == [0] and slots[0]["state"] == 0
    finally:
        embedder.stop()


def metric(text: str, name: str) -> float:
    return float(next(line.split()[1] for line in text.splitlines() if line.startswith(f"llamacpp:{name} ")))


def test_slots_fill_and_metrics_count(server, api):
    """Three requests on two slots: two decode, one waits (requests_deferred); /metrics counts
    every token decoded."""
    before = raw(server.url + "/metrics")[2]
    threads = [threading.Thread(target=api.chat.completions.create,
                                kwargs={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})
               for _ in range(3)]
    for thread in threads:
        thread.start()
    seen = set()
    while any(thread.is_alive() for thread in threads):
        text = raw(server.url + "/metrics")[2]
        seen.add((metric(text, "requests_processing"), metric(text, "requests_deferred")))
    for thread in threads:
        thread.join()
    assert (2, 1) in seen and not any(processing > 2 for processing, _ in seen), seen
    after = raw(server.url + "/metrics")[2]
    assert metric(after, "tokens_predicted_total") - metric(before, "tokens_predicted_total") == 150


def test_a_stream_cut_off_is_an_error_for_the_client(server, api):
    """A server that dies mid-stream leaves the chunked answer unfinished: the client raises,
    it does not take the text so far for a whole answer."""
    chunks = 0
    with pytest.raises(openai.APIConnectionError):
        for _ in api.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=500, stream=True):
            chunks += 1
            if chunks == 5:
                os.kill(server.process.pid, signal.SIGKILL)
    assert chunks >= 5
