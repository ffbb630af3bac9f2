"""A fake OpenAI / Anthropic provider on loopback, for tests and `make demo`.

The provider is the one thing SpanLedger's tests fake: the real `openai` and `anthropic`
SDKs, the real instrumentation and SpanLedger itself run unchanged against it. It answers
`POST /v1/chat/completions` and `POST /v1/messages` with bodies and SSE streams shaped like
the real APIs, counts tokens deterministically, simulates prompt caching and reasoning
tokens, fails on request, and records what it "billed", so a test can compare the costs
SpanLedger computed from the traces with the provider's own bill.

Token rules (deterministic, so a test can work out the expected numbers by hand):

* a piece of text is ``max(1, len(text) // 4)`` tokens (`tokens`);
* every message, and the system prompt, adds ``MESSAGE_OVERHEAD``; each tool definition
  counts as its JSON; each request adds ``REPLY_PRIMING``;
* output is the reply text's tokens plus, for a tool call, the tokens of its name and JSON
  arguments; o-series models (o1, o3, o3-mini, o4-mini...) also think
  ``REASONING_BASE + 2 * visible`` reasoning tokens, counted inside ``completion_tokens``
  as OpenAI does.

Prompt caching (caches never expire; `FakeProvider.reset` clears them):

* OpenAI, automatic: the longest prefix of the request (tools, then the first k messages)
  seen before for the same model counts as ``cached_tokens`` if it is >= 1024 tokens,
  rounded down to a multiple of 128.
* Anthropic, explicit: a block marked ``cache_control`` is a breakpoint. The first request
  whose prefix up to a breakpoint is >= 1024 tokens reports it as
  ``cache_creation_input_tokens``; later requests read it as ``cache_read_input_tokens``;
  ``input_tokens`` excludes both, as in the real API.

Scripting, per request by header (works from another process too):

* ``x-fake-reply: text`` -- what the assistant says;
* ``x-fake-tool-call: name {"city": "Paris"}`` -- call that tool with those arguments
  (``*`` = the first tool the request offers; the request must offer it);
* ``x-fake-fail: 429,500`` -- one status per attempt, counted per ``x-fake-key`` header or
  else per hash of path and body, so the SDK's own retries of one request walk the list;
  once it is used up the request succeeds.

or in-process with `FakeProvider.script`, a queue that every endpoint consumes first.
Errors carry ``retry-after: 0`` and ``retry-after-ms: 1``: both SDKs ignore a zero
``retry-after`` and fall back to a 0.5 s+ exponential backoff, but honour the milliseconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import socket
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Provider = Literal["openai", "anthropic"]

MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
REASONING_BASE = 64
CACHE_MIN_TOKENS = 1024
OPENAI_CACHE_STEP = 128
DEFAULT_REPLY = "This is a reply from the SpanLedger fake provider."

# Requested alias -> the dated snapshot the real APIs name in their responses.
SNAPSHOTS: dict[str, str] = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4.1-mini": "gpt-4.1-mini-2025-04-14",
    "gpt-4.1-nano": "gpt-4.1-nano-2025-04-14",
    "o1": "o1-2024-12-17",
    "o3": "o3-2025-04-16",
    "o3-mini": "o3-mini-2025-01-31",
    "o4-mini": "o4-mini-2025-04-16",
    "claude-3-5-haiku-latest": "claude-3-5-haiku-20241022",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet-20250219",
    "claude-sonnet-4-0": "claude-sonnet-4-20250514",
    "claude-opus-4-0": "claude-opus-4-20250514",
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
}

OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
ANTHROPIC_ERRORS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def tokens(text: str) -> int:
    """Tokens of a piece of text: about four characters each, never zero."""
    return max(1, len(text) // 4)


def snapshot(model: str) -> str:
    """The dated model name a response reports for a requested alias (unknown names echo)."""
    return SNAPSHOTS.get(model, model)


def is_reasoning_model(model: str) -> bool:
    """o-series models (o1, o3-mini, o4-mini...) spend hidden reasoning tokens."""
    return re.match(r"o\d", model) is not None


@dataclass(frozen=True)
class Reply:
    """What the fake assistant answers: text (None = default, or none with a tool call)."""

    text: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServedRequest:
    """One attempt the provider answered, with the usage it returned and what it billed."""

    provider: Provider
    path: str
    model: str  # as requested
    status: int
    stream: bool
    response_model: str | None = None  # the snapshot name in the response
    usage: dict[str, Any] | None = None  # exactly as returned
    # The bill in SpanLedger's `Usage` field names: input_uncached, cache_read, cache_write,
    # cache_write_1h, output, reasoning.
    billed: dict[str, int] | None = None
    error_type: str | None = None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Block:
    """One unit of a prompt for caching: its tokens, its identity and its breakpoint TTL."""

    tokens: int
    identity: str
    cache_ttl: str | None = None


class _BadRequest(Exception):
    """A request the real API would refuse with a 400."""


def _text(value: Any) -> str:
    """The text a model reads in a content value: strings as is, parts by their text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text(v) for v in value)
    if isinstance(value, dict):
        if isinstance(value.get("text"), str):
            return value["text"]
        return _identity(value)
    return str(value)


def _identity(value: Any) -> str:
    """Stable JSON of a block, without its cache marker (marking must not change the prefix)."""
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "cache_control"}
    return json.dumps(value, sort_keys=True)


def _ttl(block: Any) -> str | None:
    if isinstance(block, dict) and isinstance(block.get("cache_control"), dict):
        return str(block["cache_control"].get("ttl", "5m"))
    return None


def _openai_blocks(body: Mapping[str, Any]) -> list[_Block]:
    blocks = [_Block(tokens(_identity(t)), _identity(t)) for t in body.get("tools") or []]
    for message in body["messages"]:
        text = _text(message.get("content")) + _text(message.get("tool_calls"))
        blocks.append(_Block(MESSAGE_OVERHEAD + tokens(text), _identity(message)))
    return blocks


def _anthropic_blocks(body: Mapping[str, Any]) -> list[_Block]:
    blocks = [_Block(tokens(_identity(t)), _identity(t), _ttl(t)) for t in body.get("tools") or []]
    turns = [("system", body["system"])] if body.get("system") else []
    turns += [(m.get("role", "user"), m.get("content")) for m in body["messages"]]
    for role, content in turns:
        parts = content if isinstance(content, list) else [content]
        for i, part in enumerate(parts):
            overhead = MESSAGE_OVERHEAD if i == 0 else 0
            blocks.append(
                _Block(overhead + tokens(_text(part)), role + _identity(part), _ttl(part))
            )
    return blocks


def _prefixes(provider: Provider, model: str, blocks: list[_Block]) -> list[tuple[str, int]]:
    """(digest, tokens) of every prefix of the prompt, ending after each block."""
    digest = hashlib.sha256(f"{provider}\0{model}".encode())
    out, total = [], 0
    for block in blocks:
        digest.update(b"\0" + block.identity.encode())
        total += block.tokens
        out.append((digest.hexdigest(), total))
    return out


def _new_id(prefix: str, length: int) -> str:
    return prefix + uuid.uuid4().hex[:length]


def _pieces(text: str) -> list[str]:
    """Split text the way a stream delivers it: a word (with its trailing space) at a time."""
    return re.findall(r"\S+\s*|\s+", text) or [""]


class FakeProvider:
    """A local OpenAI + Anthropic API that real SDKs can call; see the module docstring."""

    def __init__(self) -> None:
        self.url: str | None = None
        self._lock = threading.Lock()
        self._records: list[ServedRequest] = []
        self._cache: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._script: deque[int | Reply] = deque()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
                Route("/_fake/requests", self._list_requests, methods=["GET"]),
                Route("/_fake/reset", self._reset_endpoint, methods=["POST"]),
                Route("/_fake/health", self._health, methods=["GET"]),
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 (an ephemeral port by default) in a background thread.

        Returns the base URL once the server answers: ``f"{url}/v1"`` for OpenAI clients,
        ``url`` itself for Anthropic clients.
        """
        if self.url is not None:
            return self.url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-provider", daemon=True
        )
        self._thread.start()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 10
        while True:
            try:
                opener.open(f"{url}/_fake/health", timeout=1).read()
                break
            except OSError:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"fake provider did not start on {url}") from None
                time.sleep(0.02)
        self.url = url
        return url

    def stop(self) -> None:
        """Stop serving and wait for the server thread (keeps records for inspection)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread, self.url = None, None, None

    def __enter__(self) -> FakeProvider:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- test controls -----------------------------------------------------------------

    @property
    def requests(self) -> list[ServedRequest]:
        """Every attempt served so far, oldest first (a copy)."""
        with self._lock:
            return list(self._records)

    def reset(self) -> None:
        """Forget records, prompt caches, failure counters and scripted outcomes."""
        with self._lock:
            self._records.clear()
            self._cache.clear()
            self._attempts.clear()
            self._script.clear()

    def script(
        self,
        reply: str | None = None,
        *,
        tool: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        fail: Iterable[int] = (),
    ) -> None:
        """Queue outcomes for the next attempts, whichever endpoint they hit.

        Each status in ``fail`` answers one attempt; then, if ``reply`` or ``tool`` is
        given, the next attempt answers with that text and/or a call of that tool
        (``"*"`` = the first tool offered). Unscripted attempts get `DEFAULT_REPLY`.
        """
        with self._lock:
            self._script.extend(int(status) for status in fail)
            if reply is not None or tool is not None:
                self._script.append(Reply(reply, tool, dict(arguments or {})))

    # -- HTTP endpoints ----------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def _list_requests(self, request: Request) -> Response:
        return JSONResponse([r.to_dict() for r in self.requests])

    async def _reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"ok": True})

    async def _openai(self, request: Request) -> Response:
        return await self._serve(request, "openai")

    async def _anthropic(self, request: Request) -> Response:
        return await self._serve(request, "anthropic")

    async def _serve(self, request: Request, provider: Provider) -> Response:
        raw = await request.body()
        stream = False
        model = ""
        try:
            body = json.loads(raw)
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise _BadRequest("`model` is required")
            if not isinstance(body.get("messages"), list) or not body["messages"]:
                raise _BadRequest("`messages` must be a non-empty list")
            model, stream = body["model"], bool(body.get("stream"))
            outcome = self._decide(request, raw)
            if isinstance(outcome, int):
                return self._error(provider, request, model, stream, outcome)
            if provider == "openai":
                return self._openai_reply(request, body, outcome)
            return self._anthropic_reply(request, body, outcome)
        except (ValueError, _BadRequest) as exc:
            message = f"fake provider: {exc}"
            return self._error(provider, request, model, stream, 400, message)

    def _decide(self, request: Request, raw: bytes) -> int | Reply:
        """The outcome of this attempt: a failure status or the reply to give."""
        fail = request.headers.get("x-fake-fail")
        with self._lock:
            if fail:
                key = (
                    request.headers.get("x-fake-key")
                    or hashlib.sha256(request.url.path.encode() + b"\0" + raw).hexdigest()
                )
                attempt = self._attempts.get(key, 0)
                self._attempts[key] = attempt + 1
                statuses = [int(s) for s in fail.split(",") if s.strip()]
                if attempt < len(statuses):
                    return statuses[attempt]
            if self._script:
                return self._script.popleft()
        tool_header = request.headers.get("x-fake-tool-call")
        if tool_header:
            name, _, args = tool_header.strip().partition(" ")
            arguments = json.loads(args) if args.strip() else {}
            return Reply(request.headers.get("x-fake-reply"), name, arguments)
        return Reply(request.headers.get("x-fake-reply"))

    def _record(self, record: ServedRequest) -> None:
        with self._lock:
            self._records.append(record)

    def _error(
        self,
        provider: Provider,
        request: Request,
        model: str,
        stream: bool,
        status: int,
        message: str | None = None,
    ) -> Response:
        """The real error body for a status, with headers that make SDK retries instant."""
        request_id = _new_id("req_", 24)
        headers = {"retry-after": "0", "retry-after-ms": "1"}
        if provider == "openai":
            default = ("server_error", None, "Error.") if status >= 500 else OPENAI_ERRORS[400]
            kind, code, text = OPENAI_ERRORS.get(status, default)
            error = {"message": message or text, "type": kind, "param": None, "code": code}
            body: dict[str, Any] = {"error": error}
            headers["x-request-id"] = request_id
        else:
            fallback = "api_error" if status >= 500 else "invalid_request_error"
            kind = ANTHROPIC_ERRORS.get(status, fallback)
            error = {"type": kind, "message": message or f"fake {kind}"}
            body = {"type": "error", "error": error, "request_id": request_id}
            headers["request-id"] = request_id
        self._record(
            ServedRequest(provider, request.url.path, model, status, stream, error_type=kind)
        )
        return JSONResponse(body, status_code=status, headers=headers)

    # -- shared reply logic ------------------------------------------------------------

    @staticmethod
    def _resolve_tool(reply: Reply, offered: list[str]) -> str | None:
        """The tool the reply calls, checked against what the request offers."""
        if reply.tool is None:
            return None
        if reply.tool == "*" and offered:
            return offered[0]
        if reply.tool not in offered:
            raise _BadRequest(
                f"scripted tool call {reply.tool!r}, but the request offers {offered}"
            )
        return reply.tool

    @staticmethod
    def _visible_text(reply: Reply, tool: str | None, limit: Any) -> tuple[str | None, bool]:
        """The reply text, cut to the request's max tokens; and whether it was cut."""
        text = reply.text if reply.text is not None or tool else DEFAULT_REPLY
        if text and isinstance(limit, int) and limit > 0 and tokens(text) > limit:
            return text[: limit * 4], True
        return text, False

    # -- OpenAI ------------------------------------------------------------------------

    def _openai_reply(self, request: Request, body: dict[str, Any], reply: Reply) -> Response:
        model, served = body["model"], snapshot(body["model"])
        offered = [t.get("function", {}).get("name") for t in body.get("tools") or []]
        tool = self._resolve_tool(reply, offered)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        text, cut = self._visible_text(reply, tool, limit)
        blocks = _openai_blocks(body)
        prompt = sum(b.tokens for b in blocks) + REPLY_PRIMING
        with self._lock:
            cached = self._openai_cached(served, blocks)

        message: dict[str, Any] = {
            "role": "assistant",
            "content": text,
            "refusal": None,
            "annotations": [],
        }
        visible = tokens(text) if text else 0
        if tool:
            args = json.dumps(reply.arguments)
            call = {"name": tool, "arguments": args}
            message["tool_calls"] = [
                {"id": _new_id("call_", 24), "type": "function", "function": call}
            ]
            visible += tokens(tool + args)
        reasoning = REASONING_BASE + 2 * visible if is_reasoning_model(served) else 0
        completion_tokens = visible + reasoning
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        finish = "tool_calls" if tool else "length" if cut else "stop"
        completion = {
            "id": _new_id("chatcmpl-", 29),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake00001",
        }
        stream = bool(body.get("stream"))
        billed = {
            "input_uncached": prompt - cached,
            "cache_read": cached,
            "cache_write": 0,
            "cache_write_1h": 0,
            "output": completion_tokens,
            "reasoning": reasoning,
        }
        self._record(
            ServedRequest("openai", request.url.path, model, 200, stream, served, usage, billed)
        )
        headers = {"x-request-id": _new_id("req_", 24)}
        if not stream:
            return JSONResponse(completion, headers=headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._openai_stream(completion, include_usage),
            media_type="text/event-stream",
            headers=headers,
        )

    def _openai_cached(self, served: str, blocks: list[_Block]) -> int:
        """Cached tokens by OpenAI's rule: longest seen prefix >= 1024, in steps of 128."""
        prefixes = _prefixes("openai", served, blocks)
        hit = max((n for digest, n in prefixes if digest in self._cache), default=0)
        self._cache.update(digest for digest, _ in prefixes)
        return hit - hit % OPENAI_CACHE_STEP if hit >= CACHE_MIN_TOKENS else 0

    @staticmethod
    async def _openai_stream(
        completion: dict[str, Any], include_usage: bool
    ) -> AsyncIterator[bytes]:
        """`chat.completion.chunk` SSE lines as OpenAI sends them, then ``[DONE]``."""
        base = {k: completion[k] for k in ("id", "created", "model", "service_tier")}
        base |= {"object": "chat.completion.chunk", "system_fingerprint": "fp_fake00001"}
        choice, message = completion["choices"][0], completion["choices"][0]["message"]

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return f"data: {json.dumps(data)}\n\n".encode()

        first_content = "" if message["content"] is not None else None
        yield chunk({"role": "assistant", "content": first_content, "refusal": None})
        if message["content"]:
            for piece in _pieces(message["content"]):
                yield chunk({"content": piece})
        for index, call in enumerate(message.get("tool_calls") or []):
            start = {"name": call["function"]["name"], "arguments": ""}
            head = {"index": index, "id": call["id"], "type": "function", "function": start}
            yield chunk({"tool_calls": [head]})
            for piece in _pieces(call["function"]["arguments"]):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, choice["finish_reason"])
        if include_usage:
            last = {**base, "choices": [], "usage": completion["usage"]}
            yield f"data: {json.dumps(last)}\n\n".encode()
        yield b"data: [DONE]\n\n"

    # -- Anthropic ---------------------------------------------------------------------

    def _anthropic_reply(self, request: Request, body: dict[str, Any], reply: Reply) -> Response:
        model, served = body["model"], snapshot(body["model"])
        tool = self._resolve_tool(reply, [t.get("name") for t in body.get("tools") or []])
        text, cut = self._visible_text(reply, tool, body.get("max_tokens"))
        blocks = _anthropic_blocks(body)
        total = sum(b.tokens for b in blocks) + REPLY_PRIMING
        with self._lock:
            read, written, ttl = self._anthropic_cache(served, blocks)

        content: list[dict[str, Any]] = []
        output = 0
        if text:
            content.append({"type": "text", "text": text})
            output += tokens(text)
        if tool:
            block = {"type": "tool_use", "id": _new_id("toolu_", 24), "name": tool}
            content.append(block | {"input": reply.arguments})
            output += tokens(tool + json.dumps(reply.arguments))
        usage = {
            "input_tokens": total - read - written,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": written if ttl != "1h" else 0,
                "ephemeral_1h_input_tokens": written if ttl == "1h" else 0,
            },
            "output_tokens": output,
            "service_tier": "standard",
        }
        message = {
            "id": _new_id("msg_", 24),
            "type": "message",
            "role": "assistant",
            "model": served,
            "content": content,
            "stop_reason": "tool_use" if tool else "max_tokens" if cut else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        stream = bool(body.get("stream"))
        billed = {
            "input_uncached": usage["input_tokens"],
            "cache_read": read,
            "cache_write": written if ttl != "1h" else 0,
            "cache_write_1h": written if ttl == "1h" else 0,
            "output": output,
            "reasoning": 0,
        }
        self._record(
            ServedRequest("anthropic", request.url.path, model, 200, stream, served, usage, billed)
        )
        headers = {"request-id": _new_id("req_", 24)}
        if not stream:
            return JSONResponse(message, headers=headers)
        return StreamingResponse(
            self._anthropic_stream(message), media_type="text/event-stream", headers=headers
        )

    def _anthropic_cache(self, served: str, blocks: list[_Block]) -> tuple[int, int, str | None]:
        """(read, written, ttl) by Anthropic's rule: only `cache_control` breakpoints cache."""
        breakpoints = [i for i, b in enumerate(blocks) if b.cache_ttl]
        if not breakpoints:
            return 0, 0, None
        prefixes = _prefixes("anthropic", served, blocks)
        last = breakpoints[-1]
        read = max((n for digest, n in prefixes[: last + 1] if digest in self._cache), default=0)
        self._cache.update(
            prefixes[i][0] for i in breakpoints if prefixes[i][1] >= CACHE_MIN_TOKENS
        )
        end = prefixes[last][1]
        written = end - read if end >= CACHE_MIN_TOKENS else 0
        return read, written, blocks[last].cache_ttl

    @staticmethod
    async def _anthropic_stream(message: dict[str, Any]) -> AsyncIterator[bytes]:
        """The event sequence the Messages API streams, usage in message_start and message_delta."""

        def event(kind: str, data: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        usage = message["usage"]
        start_usage = usage | {"output_tokens": 1}
        start = message | {"content": [], "stop_reason": None, "usage": start_usage}
        yield event("message_start", {"message": start})
        yield event("ping", {})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
                for piece in _pieces(block["text"]):
                    delta = {"type": "text_delta", "text": piece}
                    yield event("content_block_delta", {"index": index, "delta": delta})
            else:
                yield event(
                    "content_block_start",
                    {"index": index, "content_block": block | {"input": {}}},
                )
                for piece in _pieces(json.dumps(block["input"])):
                    delta = {"type": "input_json_delta", "partial_json": piece}
                    yield event("content_block_delta", {"index": index, "delta": delta})
            yield event("content_block_stop", {"index": index})
        final_usage = {
            k: usage[k]
            for k in (
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "output_tokens",
            )
        }
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
        yield event("message_delta", {"delta": delta, "usage": final_usage})
        yield event("message_stop", {})


def main(argv: list[str] | None = None) -> None:
    """Run the fake provider in the foreground on 127.0.0.1 (for `make demo`)."""
    parser = argparse.ArgumentParser(
        prog="python -m spanledger.demo.provider",
        description="A fake OpenAI + Anthropic API on 127.0.0.1 for demos and tests.",
    )
    parser.add_argument("--port", type=int, default=8900, help="port on 127.0.0.1 (default 8900)")
    args = parser.parse_args(argv)
    print(
        f"fake provider: OpenAI base_url=http://127.0.0.1:{args.port}/v1, "
        f"Anthropic base_url=http://127.0.0.1:{args.port}",
        flush=True,
    )
    uvicorn.run(FakeProvider().app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
