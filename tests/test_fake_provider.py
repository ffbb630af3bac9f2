"""The fake provider, driven by the real `openai` and `anthropic` SDKs.

Expected token counts are worked out by hand from the rules in the provider's docstring:
text is len // 4 tokens (min 1), each message adds 4, each request adds 3.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from serverkit import eventually
from spanledger.demo.provider import DEFAULT_REPLY, FakeProvider

REPLY_TOKENS = 12  # len(DEFAULT_REPLY) == 50 -> 12
LONG_SYSTEM = "You are a careful assistant. " * 200  # 5800 chars -> 1450 tokens
LONG_SYSTEM_TOKENS = 1450 + 4  # plus the message overhead
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
CLAUDE = "claude-haiku-4-5"

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh(fake: FakeProvider) -> None:
    fake.reset()


@pytest.fixture
def oai(fake: FakeProvider) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=0) as client:
        yield client


def _get_json(url: str) -> object:
    with _no_proxy.open(url, timeout=5) as response:
        return json.loads(response.read())


# -- OpenAI ----------------------------------------------------------------------------


def test_openai_completion_usage_and_snapshot_model(fake: FakeProvider, oai: openai.OpenAI) -> None:
    response = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}]
    )
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.id.startswith("chatcmpl-")
    assert response.choices[0].message.content == DEFAULT_REPLY
    assert response.choices[0].finish_reason == "stop"
    usage = response.usage
    assert usage is not None
    # "hi there" = 2 tokens + 4 (message) + 3 (request) = 9
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 12, 21)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details
    assert usage.completion_tokens_details.reasoning_tokens == 0

    [record] = fake.requests
    assert (record.provider, record.path, record.model, record.status) == (
        "openai",
        "/v1/chat/completions",
        "gpt-4o-mini",
        200,
    )
    assert record.response_model == "gpt-4o-mini-2024-07-18"
    assert record.usage == usage.to_dict()
    assert record.billed == {
        "input_uncached": 9,
        "cache_read": 0,
        "cache_write": 0,
        "cache_write_1h": 0,
        "output": 12,
        "reasoning": 0,
    }


def test_openai_unknown_model_is_echoed_and_reply_is_scriptable(oai: openai.OpenAI) -> None:
    response = oai.chat.completions.create(
        model="my-finetune",
        messages=[{"role": "user", "content": "hi there"}],
        extra_headers={"x-fake-reply": "Twenty chars exactly"},
    )
    assert response.model == "my-finetune"
    assert response.choices[0].message.content == "Twenty chars exactly"
    assert response.usage and response.usage.completion_tokens == 5


def test_openai_stream_reports_usage_only_when_asked(
    fake: FakeProvider, oai: openai.OpenAI
) -> None:
    messages = [{"role": "user", "content": "hi there"}]
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == DEFAULT_REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    *body, last = chunks
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (9, REPLY_TOKENS)
    assert all(c.usage is None for c in body)
    assert {c.model for c in chunks} == {"gpt-4o-mini-2024-07-18"}

    # Without include_usage the stream carries no usage, yet the provider still bills it.
    plain = list(oai.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
    assert all(c.usage is None for c in plain) and all(c.choices for c in plain)
    assert [r.stream for r in fake.requests] == [True, True]
    assert fake.requests[1].billed and fake.requests[1].billed["output"] == REPLY_TOKENS


def test_openai_caches_a_repeated_long_prefix(fake: FakeProvider, oai: openai.OpenAI) -> None:
    def ask(question: str) -> openai.types.CompletionUsage:
        response = oai.chat.completions.create(
            model="gpt-4o",
            messages=[
                {"role": "system", "content": LONG_SYSTEM},
                {"role": "user", "content": question},
            ],
        )
        assert response.usage is not None
        return response.usage

    first, second, other = ask("q1"), ask("q1"), ask("a different question")
    prefix = LONG_SYSTEM_TOKENS + 4 + 1  # system + "q1" message
    assert first.prompt_tokens == second.prompt_tokens == prefix + 3
    cached = [u.prompt_tokens_details.cached_tokens for u in (first, second, other)]  # type: ignore[union-attr]
    # seen prefix rounded down to 128s: 1459 -> 1408; the other question shares the system
    # prompt only: 1454 -> 1408 too.
    assert cached == [0, 1408, 1408]
    assert all(c % 128 == 0 for c in cached)
    billed = fake.requests[1].billed
    assert billed and billed["cache_read"] == 1408
    assert billed["input_uncached"] == second.prompt_tokens - 1408

    # A short prompt is never cached, however often it is sent.
    for _ in range(2):
        short = oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi there"}]
        )
        assert short.usage and short.usage.prompt_tokens_details
        assert short.usage.prompt_tokens_details.cached_tokens == 0


def test_o_series_models_report_reasoning_inside_completion_tokens(oai: openai.OpenAI) -> None:
    response = oai.chat.completions.create(
        model="o3-mini", messages=[{"role": "user", "content": "hi there"}]
    )
    assert response.model == "o3-mini-2025-01-31"
    usage = response.usage
    assert usage and usage.completion_tokens_details
    reasoning = usage.completion_tokens_details.reasoning_tokens
    assert reasoning == 64 + 2 * REPLY_TOKENS
    assert usage.completion_tokens == REPLY_TOKENS + reasoning
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_tool_call_plain_and_streamed(oai: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    headers = {"x-fake-tool-call": 'get_weather {"city": "Paris"}'}
    response = oai.chat.completions.create(
        model="gpt-4o-mini", messages=messages, tools=TOOLS, extra_headers=headers
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # "get_weather" + '{"city": "Paris"}' = 28 chars -> 7 tokens
    assert response.usage and response.usage.completion_tokens == 7

    # The SDK's stream helper accumulates the tool-call deltas back into the same call.
    with oai.chat.completions.stream(
        model="gpt-4o-mini",
        messages=messages,
        tools=TOOLS,
        extra_headers={"x-fake-tool-call": "*"},
        stream_options={"include_usage": True},
    ) as stream:
        final = stream.get_final_completion()
    [streamed] = final.choices[0].message.tool_calls or []
    assert streamed.function.name == "get_weather"
    assert json.loads(streamed.function.arguments) == {}
    assert final.usage and final.usage.completion_tokens == 3


def test_openai_tool_call_the_request_does_not_offer_is_a_400(
    fake: FakeProvider, oai: openai.OpenAI
) -> None:
    with pytest.raises(openai.BadRequestError, match="get_weather"):
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-tool-call": "get_weather"},
        )
    assert [r.status for r in fake.requests] == [400]


def test_openai_max_tokens_cuts_the_reply(oai: openai.OpenAI) -> None:
    response = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.content == DEFAULT_REPLY[:12]
    assert response.usage and response.usage.completion_tokens == 3


def test_openai_sdk_retries_429_then_500_then_succeeds(fake: FakeProvider) -> None:
    client = openai.OpenAI(base_url=f"{fake.url}/v1", api_key="test", max_retries=2)
    response = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi there"}],
        extra_headers={"x-fake-fail": "429,500"},
    )
    assert response.choices[0].message.content == DEFAULT_REPLY
    assert [r.status for r in fake.requests] == [429, 500, 200]
    assert [r.error_type for r in fake.requests] == ["requests", "server_error", None]
    assert fake.requests[0].usage is None and fake.requests[0].billed is None

    # With one retry fewer, the SDK gives up on the 500 (fresh key: a fresh failure list).
    client = client.with_options(max_retries=1)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi there"}],
            extra_headers={"x-fake-fail": "429,500", "x-fake-key": "second"},
        )
    assert caught.value.status_code == 500 and caught.value.type == "server_error"
    assert [r.status for r in fake.requests][3:] == [429, 500]
    client.close()
    # retry-after-ms makes the SDK retry at once instead of backing off 0.5 s + 1 s.
    refused = httpx.post(
        f"{fake.url}/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "again"}]},
        headers={"x-fake-fail": "429", "x-fake-key": "retry-header"},
    )
    assert refused.status_code == 429
    assert refused.headers["retry-after-ms"] == "1"


def test_openai_rate_limit_error_body(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-fail": "429"},
        )
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.type == "requests"
    assert caught.value.response.headers["retry-after"] == "0"


def test_async_openai_client(fake: FakeProvider) -> None:
    async def run() -> tuple[openai.types.chat.ChatCompletion, list[str], int]:
        async with openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="test") as client:
            messages = [{"role": "user", "content": "hi there"}]
            plain = await client.chat.completions.create(model="gpt-4o-mini", messages=messages)
            stream = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            pieces, prompt = [], 0
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                if chunk.usage:
                    prompt = chunk.usage.prompt_tokens
            return plain, pieces, prompt

    plain, pieces, prompt = asyncio.run(run())
    assert plain.usage and plain.usage.prompt_tokens == 9
    assert "".join(pieces) == DEFAULT_REPLY and len(pieces) > 1
    assert prompt == 9
    assert len(fake.requests) == 2


# -- Anthropic -------------------------------------------------------------------------


def test_anthropic_message_usage(fake: FakeProvider, claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hello"}]
    )
    assert message.model == "claude-haiku-4-5-20251001"
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text" and block.text == DEFAULT_REPLY
    # "hello" = 1 token + 4 (message) + 3 (request) = 8
    assert (message.usage.input_tokens, message.usage.output_tokens) == (8, REPLY_TOKENS)
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0

    [record] = fake.requests
    assert (record.provider, record.path, record.status) == ("anthropic", "/v1/messages", 200)
    assert record.usage == message.usage.to_dict()


def test_anthropic_streams_with_the_helper_and_raw_events(claude: anthropic.Anthropic) -> None:
    kwargs = {
        "model": CLAUDE,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hello"}],
    }
    with claude.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == DEFAULT_REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (8, REPLY_TOKENS)
    assert final.stop_reason == "end_turn"

    events = list(claude.messages.create(**kwargs, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    # As the real API: input in message_start (output only 1 so far), the total output in
    # message_delta.
    assert (start.message.usage.input_tokens, start.message.usage.output_tokens) == (8, 1)
    assert delta.usage.output_tokens == REPLY_TOKENS


def test_anthropic_cache_control_writes_then_reads(
    fake: FakeProvider, claude: anthropic.Anthropic
) -> None:
    def ask(ttl: str | None = None) -> anthropic.types.Usage:
        control = {"type": "ephemeral"} | ({"ttl": ttl} if ttl else {})
        return claude.messages.create(
            model=CLAUDE,
            max_tokens=100,
            system=[{"type": "text", "text": LONG_SYSTEM, "cache_control": control}],
            messages=[{"role": "user", "content": "q1"}],
        ).usage

    first, second = ask(), ask()
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (
        LONG_SYSTEM_TOKENS,
        0,
    )
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (
        0,
        LONG_SYSTEM_TOKENS,
    )
    # input_tokens excludes the cache: "q1" message (5) + request (3)
    assert first.input_tokens == second.input_tokens == 8
    assert first.cache_creation and first.cache_creation.ephemeral_5m_input_tokens == 1454
    assert fake.requests[0].billed == {
        "input_uncached": 8,
        "cache_read": 0,
        "cache_write": 1454,
        "cache_write_1h": 0,
        "output": REPLY_TOKENS,
        "reasoning": 0,
    }
    assert fake.requests[1].billed and fake.requests[1].billed["cache_read"] == 1454

    fake.reset()
    hour = ask("1h")
    assert hour.cache_creation and hour.cache_creation.ephemeral_1h_input_tokens == 1454
    assert fake.requests[0].billed and fake.requests[0].billed["cache_write_1h"] == 1454


def test_anthropic_caches_nothing_without_cache_control_or_below_1024(
    claude: anthropic.Anthropic,
) -> None:
    for _ in range(2):
        usage = claude.messages.create(
            model=CLAUDE,
            max_tokens=100,
            system=LONG_SYSTEM,
            messages=[{"role": "user", "content": "q1"}],
        ).usage
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
        assert usage.input_tokens == LONG_SYSTEM_TOKENS + 8
    for _ in range(2):
        block = {"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}
        usage = claude.messages.create(
            model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": [block]}]
        ).usage
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)


def test_anthropic_tool_use_scripted_in_process(
    fake: FakeProvider, claude: anthropic.Anthropic
) -> None:
    fake.script("Let me check.", tool="*", arguments={"city": "Paris"})
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}]
    kwargs = {
        "model": CLAUDE,
        "max_tokens": 100,
        "tools": tools,
        "messages": [{"role": "user", "content": "Weather?"}],
    }
    message = claude.messages.create(**kwargs)
    assert message.stop_reason == "tool_use"
    text, call = message.content
    assert text.type == "text" and text.text == "Let me check."
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == {"city": "Paris"}

    # The script was used up: the next request gets the default reply, and a streamed
    # tool call (by header) is reassembled by the SDK.
    headers = {"x-fake-tool-call": 'get_weather {"city": "Oslo"}'}
    with claude.messages.stream(**kwargs, extra_headers=headers) as stream:
        final = stream.get_final_message()
    [streamed] = final.content
    assert streamed.type == "tool_use" and streamed.input == {"city": "Oslo"}
    assert final.stop_reason == "tool_use"


def test_anthropic_sdk_retries_scripted_failures(fake: FakeProvider) -> None:
    fake.script(fail=[429, 500])
    with anthropic.Anthropic(base_url=fake.url, api_key="test", max_retries=2) as client:
        message = client.messages.create(
            model=CLAUDE, max_tokens=100, messages=[{"role": "user", "content": "hello"}]
        )
    assert message.content[0].type == "text"
    assert [r.status for r in fake.requests] == [429, 500, 200]
    assert [r.error_type for r in fake.requests] == ["rate_limit_error", "api_error", None]


def test_anthropic_error_body(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(
            model=CLAUDE,
            max_tokens=100,
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"x-fake-fail": "429"},
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        claude.messages.create(
            model=CLAUDE,
            max_tokens=100,
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"x-fake-fail": "529", "x-fake-key": "overloaded"},
        )
    assert overloaded.value.status_code == 529
    assert isinstance(overloaded.value.body, dict)
    assert overloaded.value.body["error"]["type"] == "overloaded_error"


def test_anthropic_max_tokens_stop_reason(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=CLAUDE, max_tokens=2, messages=[{"role": "user", "content": "hello"}]
    )
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


# -- records, lifecycle, standalone ----------------------------------------------------


def test_requests_are_readable_over_http_and_reset(
    fake: FakeProvider, oai: openai.OpenAI, claude: anthropic.Anthropic
) -> None:
    oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
    claude.messages.create(model=CLAUDE, max_tokens=10, messages=[{"role": "user", "content": "b"}])
    served = _get_json(f"{fake.url}/_fake/requests")
    assert served == [r.to_dict() for r in fake.requests]
    assert [r["provider"] for r in served] == ["openai", "anthropic"]  # type: ignore[index]

    _no_proxy.open(urllib.request.Request(f"{fake.url}/_fake/reset", method="POST"), timeout=5)
    assert fake.requests == [] and _get_json(f"{fake.url}/_fake/requests") == []


def test_start_and_stop() -> None:
    with FakeProvider() as first, FakeProvider() as second:
        assert first.url and second.url and first.url != second.url
        assert first.url.startswith("http://127.0.0.1:")
        url = first.url
        assert _get_json(f"{url}/_fake/health") == {"ok": True}
    assert first.url is None
    with pytest.raises(urllib.error.URLError):
        _get_json(f"{url}/_fake/health")


def test_standalone_module_serves_on_the_given_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "spanledger.demo.provider", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    health = f"http://127.0.0.1:{port}/_fake/health"

    def answers() -> bool:
        assert process.poll() is None, process.stdout and process.stdout.read()
        try:
            _get_json(health)
        except urllib.error.URLError:
            return False
        return True

    try:
        eventually(answers, "the standalone provider answers", timeout=20)
        assert _get_json(health) == {"ok": True}
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test") as client:
            response = client.chat.completions.create(
                model="o4-mini", messages=[{"role": "user", "content": "hi"}]
            )
        assert response.model == "o4-mini-2025-04-16"
    finally:
        process.terminate()
        process.wait(timeout=10)
