"""What an application does with the fleet's endpoint, through the official `openai` package: the
checks the stand-in's tests and the lab's front-door tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import openai

# The stand-in decodes a token per 10 ms at least (server.c's TOKEN_US).
TOKEN_SECONDS = 0.01


def client(base_url: str, key: str, **kwargs) -> openai.OpenAI:
    """A client as an application makes one; no retries, so that a test sees every failure."""
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=60, **kwargs)


@dataclass
class Streamed:
    """A streamed chat completion: the text, when each content chunk arrived (seconds from the
    request), the finish reason and usage of the last chunk."""
    text: str = ""
    arrivals: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    usage: object = None


def stream_chat(api: openai.OpenAI, model: str, max_tokens: int, prompt: str = "Hello") -> Streamed:
    result, start = Streamed(), time.monotonic()
    for chunk in api.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                             max_tokens=max_tokens, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            result.arrivals.append(time.monotonic() - start)
            result.text += chunk.choices[0].delta.content
        if chunk.choices and chunk.choices[0].finish_reason:
            result.finish_reason = chunk.choices[0].finish_reason
        result.usage = chunk.usage or result.usage
    return result


def assert_streamed(result: Streamed, max_tokens: int) -> None:
    """Every token came as a chunk of its own and the stream ended as the server ends it."""
    assert len(result.arrivals) == max_tokens and result.finish_reason == "length", result
    assert result.usage.completion_tokens == max_tokens, result.usage


def arrived_as_made(result: Streamed) -> bool:
    """The first chunk arrived while the rest were still being made, long before the last: the
    n - 1 tokens after it take (n - 1) token times to make, and half of that is left for
    scheduling. A buffered answer brings every chunk at once."""
    return result.arrivals[-1] - result.arrivals[0] >= (len(result.arrivals) - 1) * TOKEN_SECONDS * 0.5


def assert_streams_as_made(make: Callable[[], Streamed], max_tokens: int, attempts: int = 3) -> None:
    """A stream made by `make` arrives token by token. A buffering hop brings every chunk at once
    on every try; a client that a busy machine did not schedule while the server wrote (0.7 s on
    a loaded 2-core CI machine) does so by chance, so the stream is tried up to `attempts` times."""
    tries = []
    for _ in range(attempts):
        tries.append(make())
        assert_streamed(tries[-1], max_tokens)
        if arrived_as_made(tries[-1]):
            return
    raise AssertionError(f"every chunk came at once in {attempts} streams: {[t.arrivals for t in tries]}")


def check_api(api: openai.OpenAI, model: str) -> None:
    """What any application relies on, whichever llama-server answers (the stand-in or the real
    one): the model list names the fleet's model, a chat completion comes back in OpenAI's shape,
    a stream comes as several chunks and ends with a finish reason."""
    assert [m.id for m in api.models.list()] == [model]
    answer = api.chat.completions.create(model=model, messages=[{"role": "user", "content": "The capital of France is"}],
                                         max_tokens=8)
    assert answer.object == "chat.completion" and answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content and 0 < answer.usage.completion_tokens <= 8
    streamed = stream_chat(api, model, 8)
    assert len(streamed.arrivals) >= 2 and streamed.text and streamed.finish_reason in ("length", "stop"), streamed
