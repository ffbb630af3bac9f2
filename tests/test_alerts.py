"""Alerts on a real server: rules from the serve config, evaluated on the ingest pipeline,
delivered to a real local HTTP receiver (the webhook), listed by /api/alerts and counted on
/metrics.

Each test runs `Server.build(ServeConfig(... alerts ...)).start()` on a DuckDB file with the
pinned rates of `serverkit.RATES`. Window rules count spend at ingest time on the engine's
clock, which the tests replace (`FakeClock`) to move time without sleeping; the periodic
evaluation is pushed out of the way (`evaluate_seconds: 3600`) and called by the test
(`server.alerts.evaluate()`), so every outcome is decided by the test's steps. Waiting for
the webhook is bounded (`Receiver.wait_for`), never a timing assertion.

Costs (femto-$; see serverkit): claude-sonnet-4-5 at 10,000 input and 1,000 output tokens
= 10,000 * 3e9 + 1,000 * 15e9 = 4.5e13 ($0.045); house-llm at N input tokens = N * 2e9
($0.01 for 5,000, $0.10 for 50,000).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from serverkit import S, config, eventually, get, llm, post, request, span_id, trace_id
from spanledger.server.config import ConfigError, ServeConfig
from spanledger.server.run import Server

T = 1_800_000_000.0  # the fake clock's start: a multiple of every bucket width used here
MIN = 60.0


# --- a real webhook receiver ---------------------------------------------------------------


class Receiver:
    """A local HTTP server recording every POST (JSON body and headers). `status` is the
    answer it gives (200, or e.g. 500 to play a failing webhook)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = 200
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._changed:
                    receiver.posts.append(json.loads(body))
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver._changed.notify_all()
                    status = receiver.status
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/spanledger"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def events(self, **match: Any) -> list[dict[str, Any]]:
        """Received events whose alert has these fields (`event` matches the event)."""
        with self._changed:
            posts = list(self.posts)
        found = []
        for event in posts:
            alert = event["alert"]
            if all(
                (event if name == "event" else alert).get(name) == v for name, v in match.items()
            ):
                found.append(event)
        return found

    def wait_for(self, count: int = 1, timeout: float = 20.0, **match: Any) -> list[dict[str, Any]]:
        """Wait (bounded) until at least `count` matching events have arrived."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.events(**match)) >= count, timeout)
        found = self.events(**match)
        assert len(found) >= count, f"expected {count} events {match}, got {self.posts}"
        return found

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeClock:
    """The alert engine's clock (seconds since the epoch), moved by the test."""

    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


@contextlib.contextmanager
def alerting(
    tmp_path: Path,
    rules: list[dict[str, Any]],
    *,
    webhook: dict[str, Any] | None = None,
    clock: Callable[[], float] | None = None,
    **overrides: Any,
) -> Iterator[Server]:
    """A real server with these alert rules; the engine's clock replaced before start."""
    alerts: dict[str, Any] = {"rules": rules, "evaluate_seconds": 3600}
    if webhook is not None:
        alerts["webhook"] = webhook
    server = Server.build(config(tmp_path, alerts=alerts, **overrides))
    assert server.alerts is not None
    if clock is not None:
        server.alerts.clock = clock
    server.start()
    try:
        yield server
    finally:
        server.close()


def send(client: httpx.Client, server: Server, spans: list[S], **resource: Any) -> None:
    """POST one OTLP/HTTP request and wait until its spans are stored and seen by alerts."""
    body = request(spans, {"service.name": "svc-tests", **resource})
    response = post(client, server.http_url, body)
    assert response.status_code == 200, response.text
    server.pipeline.flush()


def metric(client: httpx.Client, server: Server, line: str) -> float:
    """The value of one /metrics sample, e.g. 'spanledger_alerts_firing{rule="x",kind="loop"}'."""
    text = client.get(f"{server.http_url}/metrics").text
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    raise AssertionError(f"{line} not in /metrics:\n{text}")


def sonnet() -> dict[str, Any]:
    return llm("claude-sonnet-4-5", 10_000, 1_000, provider="anthropic")  # $0.045


def house(input_tokens: int, **extra: Any) -> dict[str, Any]:
    return llm("house-llm", input_tokens, 0, **extra)  # input_tokens * 2e9 femto-$


def tool(name: str) -> dict[str, Any]:
    return {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}


# --- per-trace rules: raised while the trace is still running -------------------------------


def test_loop_and_trace_budget_alerts_arrive_while_the_trace_is_still_running(
    tmp_path: Path, receiver: Receiver, client: httpx.Client
) -> None:
    rules = [
        {"name": "costly-trace", "kind": "trace_cost", "max_usd": 0.10},
        {"name": "runaway", "kind": "loop"},  # more than loop_threshold (10) repeats
    ]
    # finalize_after 60 s: the open trace is not finalized as abandoned during the test.
    with alerting(
        tmp_path,
        rules,
        webhook={"url": receiver.url, "headers": {"x-hook-key": "k1"}},
        finalize_after_seconds=60,
    ) as server:
        tr, root, agent = trace_id(), span_id(), span_id()

        def under_agent(name: str, attrs: dict[str, Any], at: int) -> S:
            return S(tr, span_id(), agent, name, start=at, end=at + 1, attrs=attrs)

        # Batch 1: two LLM calls ($0.09) and three searches; batch 2: six more searches.
        send(client, server, [
            under_agent("chat claude", sonnet(), 10),
            under_agent("chat claude", sonnet(), 20),
            *(under_agent("execute_tool web_search", tool("web_search"), 30 + i) for i in range(3)),
        ])  # fmt: skip
        send(
            client,
            server,
            [under_agent("execute_tool web_search", tool("web_search"), 40 + i) for i in range(6)],
        )
        assert get(client, server.http_url, "/api/alerts")["firing"] == []  # $0.09, 9 repeats

        # Batch 3: the loop starts (11 searches > 10) and the cost crosses $0.10 ($0.135).
        crossing = under_agent("chat claude", sonnet(), 60)
        send(client, server, [
            under_agent("execute_tool web_search", tool("web_search"), 50),
            under_agent("execute_tool web_search", tool("web_search"), 51),
            crossing,
        ])  # fmt: skip

        # Both alerts reach the webhook while the root (and the agent span) are unsent.
        [cost_event] = receiver.wait_for(rule="costly-trace", event="firing")
        [loop_event] = receiver.wait_for(rule="runaway", event="firing")
        assert get(client, server.http_url, f"/api/traces/{tr}")["finalized"] is False
        assert server.pipeline.open_trace(tr) is not None

        cost = cost_event["alert"]
        assert cost_event["source"] == "spanledger"
        assert cost["status"] == "firing"
        assert cost["kind"] == "trace_cost"
        assert cost["trace_id"] == tr
        assert cost["key"] == f"trace={tr}"
        assert (cost["value"], cost["threshold"], cost["unit"]) == ("0.135", "0.1", "usd")
        assert cost["numbers"]["trace_cost_usd"] == "0.135"
        assert cost["numbers"]["spans"] == 14
        assert cost["numbers"]["llm_calls"] == 3
        assert cost["numbers"]["crossing_span_id"] == crossing.span
        assert cost["numbers"]["finalized"] is False
        assert cost["numbers"]["attribution"] == {"service": "svc-tests"}  # agent not sent yet
        assert cost["link"] == f"{server.http_url}/#/trace/{tr}"
        assert receiver.headers[0]["x-hook-key"] == "k1"
        assert receiver.headers[0]["content-type"] == "application/json"

        loop = loop_event["alert"]
        assert loop["kind"] == "loop" and loop["trace_id"] == tr
        assert (loop["value"], loop["threshold"], loop["unit"]) == ("11", "10", "calls")
        assert loop["numbers"]["repeated_kind"] == "tool"
        assert loop["numbers"]["repeated_name"] == "web_search"
        assert loop["numbers"]["parent_span_id"] == agent
        assert loop["numbers"]["repeats"] == 11
        assert loop["link"] == f"{server.http_url}/#/trace/{tr}"

        # Firing on /metrics and /api/alerts, with the latest numbers.
        assert metric(client, server, 'spanledger_alerts_firing{rule="runaway",kind="loop"}') == 1
        assert (
            metric(
                client, server, 'spanledger_alerts_firing{rule="costly-trace",kind="trace_cost"}'
            )
            == 1
        )
        # More of the same trace: still firing once, numbers updated, no new POST.
        send(client, server, [
            under_agent("execute_tool web_search", tool("web_search"), 70),
            under_agent("chat claude", sonnet(), 80),
        ])  # fmt: skip
        listed = get(client, server.http_url, "/api/alerts")
        by_rule = {alert["rule"]: alert for alert in listed["firing"]}
        assert set(by_rule) == {"costly-trace", "runaway"}
        assert by_rule["costly-trace"]["value"] == "0.18"
        assert by_rule["costly-trace"]["fired_value"] == "0.135"
        assert by_rule["runaway"]["numbers"]["repeats"] == 12
        assert listed["resolved"] == []

        # The run ends: agent and root arrive, the trace is finalized, both alerts resolve.
        send(client, server, [
            S(tr, agent, root, "invoke_agent research", start=5, end=90,
              attrs={"gen_ai.agent.name": "research"}),
            S(tr, root, name="handle request", end=100, attrs={"user.id": "u-7"}),
        ])  # fmt: skip
        server.pipeline.flush(finalize=True)
        [cost_done] = receiver.wait_for(rule="costly-trace", event="resolved")
        [loop_done] = receiver.wait_for(rule="runaway", event="resolved")
        assert cost_done["alert"]["status"] == "resolved"
        assert cost_done["alert"]["value"] == "0.18"
        assert cost_done["alert"]["numbers"]["finalized"] is True
        assert cost_done["alert"]["numbers"]["root_name"] == "handle request"
        assert cost_done["alert"]["numbers"]["attribution"] == {
            "user": "u-7",
            "service": "svc-tests",
        }
        assert cost_done["alert"]["resolved_at"] is not None
        loops = loop_done["alert"]["numbers"]["loops"]
        assert [(lp["kind"], lp["name"], lp["count"]) for lp in loops] == [
            ("tool", "web_search", 12)
        ]
        # Fire once, resolve once: exactly four POSTs for this trace.
        assert len(receiver.events(trace_id=tr)) == 4
        assert metric(client, server, 'spanledger_alerts_firing{rule="runaway",kind="loop"}') == 0
        assert (
            metric(client, server, 'spanledger_alerts_fired_total{rule="runaway",kind="loop"}') == 1
        )
        assert (
            metric(client, server, 'spanledger_alerts_resolved_total{rule="runaway",kind="loop"}')
            == 1
        )
        # Counted once the webhook's answer is back, which may be after it has the POST.
        eventually(
            lambda: metric(client, server, "spanledger_alerts_webhook_sent") == 4,
            "the webhook's four acceptances counted",
        )
        listed = get(client, server.http_url, "/api/alerts")
        assert listed["firing"] == []
        assert {alert["rule"] for alert in listed["resolved"]} == {"costly-trace", "runaway"}


def test_a_trace_under_budget_and_without_loops_raises_nothing(
    tmp_path: Path, receiver: Receiver, client: httpx.Client
) -> None:
    rules = [
        {"name": "costly-trace", "kind": "trace_cost", "max_usd": 0.10},
        {"name": "runaway", "kind": "loop", "repeats": 3},
    ]
    with alerting(
        tmp_path, rules, webhook={"url": receiver.url}, finalize_after_seconds=60
    ) as server:
        tr, root = trace_id(), span_id()
        other_parent = span_id()
        calls = [
            S(tr, span_id(), root, "chat", start=1, attrs=sonnet()),  # $0.045
            S(tr, span_id(), root, "chat", start=2, attrs=sonnet()),  # $0.09: not over $0.10
        ]
        send(client, server, [
            S(tr, root, name="root", end=50),
            *calls,
            *calls,  # the same spans twice in one request (a span counts once)
            # three searches under each of two parents: 3 is not more than 3
            *(S(tr, span_id(), root, "search", start=3 + i, attrs=tool("search"))
              for i in range(3)),
            S(tr, other_parent, root, "step", start=9),
            *(S(tr, span_id(), other_parent, "search", start=10 + i, attrs=tool("search"))
              for i in range(3)),
        ])  # fmt: skip
        send(client, server, calls)  # and again (a client retrying an export)
        server.pipeline.flush(finalize=True)
        assert get(client, server.http_url, "/api/alerts") == {
            "firing": [],
            "resolved": [],
            "rules": [
                {"name": "costly-trace", "kind": "trace_cost", "max_usd": "0.1"},
                {"name": "runaway", "kind": "loop", "repeats": 3},
            ],
        }
        assert (
            metric(client, server, 'spanledger_alerts_fired_total{rule="runaway",kind="loop"}') == 0
        )
        assert receiver.posts == []


# --- window rules, on an injected clock -----------------------------------------------------


def minute_of_traffic(tr_spend: dict[str, int]) -> list[S]:
    """One trace per agent: a root naming the agent and one house-llm call under it."""
    spans = []
    for agent, tokens in tr_spend.items():
        tr, root = trace_id(), span_id()
        spans += [
            S(tr, root, name=f"invoke_agent {agent}", end=10,
              attrs={"gen_ai.agent.name": agent}),
            S(tr, span_id(), root, "chat house-llm", start=1, end=9, attrs=house(tokens)),
        ]  # fmt: skip
    return spans


def test_spend_rate_fires_for_the_spiking_agent_only_and_resolves_when_the_spike_ends(
    tmp_path: Path, receiver: Receiver, client: httpx.Client
) -> None:
    """Three agents spend $0.01 a minute; research then spends $0.10 a minute for four
    minutes. Rule: 5m window vs the 1h before, 3x and at least $0.20.

    Buckets are 15 s (5m / 20); traffic arrives on whole minutes. At minute 62 the window
    holds minutes 58-62 of research: 3 * $0.01 + 2 * $0.10 = $0.23 >= $0.20, and its
    baseline (minutes 0-57) is $0.58, i.e. $0.0507 per 5 min; 3x that is $0.152, so the
    floor ($0.20) is the threshold. At minute 61 the window holds $0.14 (< $0.20). The
    spike leaves the window at minute 68: minutes 64-68 hold $0.10 + 4 * $0.01 = $0.14."""
    rules = [
        {"name": "spend-spike", "kind": "spend_rate", "scope": "agent", "window": "5m",
         "baseline": "1h", "ratio": 3, "min_usd": 0.20},
    ]  # fmt: skip
    clock = FakeClock()
    steady = {"planner": 5_000, "writer": 5_000, "research": 5_000}  # $0.01 each
    spike = {**steady, "research": 50_000}  # $0.10
    with alerting(tmp_path, rules, webhook={"url": receiver.url}, clock=clock) as server:
        assert server.alerts is not None
        fired_at = resolved_at = None
        for minute in range(0, 75):
            clock.now = T + minute * MIN
            send(client, server, minute_of_traffic(spike if 61 <= minute <= 64 else steady))
            server.alerts.evaluate()
            firing = {a["key"] for a in get(client, server.http_url, "/api/alerts")["firing"]}
            assert firing <= {"agent=research"}, (minute, firing)
            if firing and fired_at is None:
                fired_at = minute
            if fired_at is not None and not firing and resolved_at is None:
                resolved_at = minute
        assert (fired_at, resolved_at) == (62, 68)

        [fired] = receiver.wait_for(rule="spend-spike", event="firing")
        [resolved] = receiver.wait_for(rule="spend-spike", event="resolved")
        alert = fired["alert"]
        assert alert["kind"] == "spend_rate"
        assert (alert["scope"], alert["scope_value"], alert["key"]) == (
            "agent", "research", "agent=research",
        )  # fmt: skip
        assert (alert["value"], alert["threshold"], alert["unit"]) == ("0.23", "0.2", "usd")
        assert alert["window_seconds"] == 300 and alert["baseline_seconds"] == 3600
        numbers = alert["numbers"]
        assert numbers["spend_usd"] == "0.23"
        assert numbers["baseline_usd"] == "0.58"
        assert numbers["baseline_observed_seconds"] == 229 * 15
        expected = Decimal("0.58") * 20 / 229  # per window, at the baseline rate
        assert abs(Decimal(numbers["expected_usd"]) - expected) < Decimal("1e-12")
        assert numbers["max_ratio"] == "3" and numbers["min_usd"] == "0.2"
        assert alert["link"] == f"{server.http_url}/#/?range=6h&agent=research"
        assert resolved["alert"]["value"] == "0.14"
        assert resolved["alert"]["status"] == "resolved"
        # One firing and one resolution, nothing for the steady agents.
        assert len(receiver.posts) == 2
        assert (
            metric(
                client,
                server,
                'spanledger_alerts_fired_total{rule="spend-spike",kind="spend_rate"}',
            )
            == 1
        )


def test_spend_rate_waits_for_a_history_before_judging(
    tmp_path: Path, receiver: Receiver, client: httpx.Client
) -> None:
    """Right after start there is no baseline: a big first minute is not a spike yet.

    11 minutes later the baseline is the 25 buckets of 15 s before the window (minutes
    0-6.25; $1), i.e. $0.80 per 5 minutes; 3x is $2.40, and $5 now is over it."""
    rules = [{"name": "spike", "kind": "spend_rate", "min_usd": 0.05}]  # all spend, 5m vs 1h
    clock = FakeClock()
    with alerting(tmp_path, rules, webhook={"url": receiver.url}, clock=clock) as server:
        assert server.alerts is not None
        send(client, server, minute_of_traffic({"a": 500_000}))  # $1 in the first minute
        server.alerts.evaluate()
        assert get(client, server.http_url, "/api/alerts")["firing"] == []
        clock.now = T + 11 * MIN
        send(client, server, minute_of_traffic({"a": 2_500_000}))  # $5
        server.alerts.evaluate()
        [alert] = get(client, server.http_url, "/api/alerts")["firing"]
        assert (alert["key"], alert["value"], alert["threshold"]) == ("all", "5", "2.4")
        assert alert["scope"] is None and alert["scope_value"] is None
        assert alert["numbers"]["baseline_usd"] == "1"
        assert alert["numbers"]["baseline_observed_seconds"] == 25 * 15
        assert alert["numbers"]["expected_usd"] == "0.8"
        assert alert["numbers"]["ratio"] == "6.25"
        assert alert["link"] == f"{server.http_url}/#/?range=6h"
        [sent] = receiver.wait_for(rule="spike", event="firing")
        assert sent["alert"]["value"] == "5"


def test_a_call_is_counted_for_the_agent_it_inherits_once_the_agent_span_arrives(
    tmp_path: Path, client: httpx.Client
) -> None:
    """The agent span ends, and is exported, after its calls: a call waits for it."""
    rules = [
        {"name": "spike", "kind": "spend_rate", "scope": "agent", "window": "5m",
         "baseline": "5m", "min_usd": 0.05},
    ]  # fmt: skip
    clock = FakeClock()
    with alerting(tmp_path, rules, clock=clock, finalize_after_seconds=60) as server:
        assert server.alerts is not None
        clock.now = T + 10 * MIN  # a full baseline watched (with no spend)
        tr, root, agent = trace_id(), span_id(), span_id()
        send(client, server, [S(tr, span_id(), agent, "chat", start=2, attrs=house(50_000))])
        server.alerts.evaluate()
        assert get(client, server.http_url, "/api/alerts")["firing"] == []  # agent unknown
        clock.now += 30  # the agent span arrives later; the call counts at its own ingest time
        send(client, server, [
            S(tr, agent, root, "invoke_agent research", start=1, end=20,
              attrs={"gen_ai.agent.name": "research"}),
        ])  # fmt: skip
        [alert] = get(client, server.http_url, "/api/alerts")["firing"]
        assert (alert["key"], alert["value"]) == ("agent=research", "0.1")
        assert alert["numbers"]["baseline_usd"] == "0"
        assert alert["numbers"]["ratio"] is None  # nothing in the baseline


def test_retry_share_fires_when_retries_waste_more_than_the_share(
    tmp_path: Path, receiver: Receiver, client: httpx.Client
) -> None:
    """Agent flaky: a failed $0.045 call retried by a similar one: $0.045 of $0.09 (50%).
    Agent solid: two good calls. Rule: over 20% and at least $0.01 in 5 minutes."""
    rules = [
        {"name": "retry-waste", "kind": "retry_share", "scope": "agent", "window": "5m",
         "max_share": 0.2, "min_usd": 0.01},
    ]  # fmt: skip
    clock = FakeClock()
    with alerting(tmp_path, rules, webhook={"url": receiver.url}, clock=clock) as server:
        assert server.alerts is not None
        spans = []
        for agent, first_status in (("flaky", 2), ("solid", 0)):
            tr, root = trace_id(), span_id()
            spans += [
                S(tr, root, name="run", end=50, attrs={"gen_ai.agent.name": agent}),
                S(tr, span_id(), root, "chat", start=1, attrs=sonnet(), status=first_status),
                S(tr, span_id(), root, "chat", start=5, attrs=sonnet()),
            ]
        send(client, server, spans)
        [fired] = receiver.wait_for(rule="retry-waste", event="firing")
        alert = fired["alert"]
        assert alert["key"] == "agent=flaky"
        assert (alert["value"], alert["threshold"], alert["unit"]) == ("0.5", "0.2", "share")
        assert alert["numbers"]["retry_overhead_usd"] == "0.045"
        assert alert["numbers"]["spend_usd"] == "0.09"
        # Five minutes on, the window is empty: resolved.
        clock.now += 6 * MIN
        server.alerts.evaluate()
        [resolved] = receiver.wait_for(rule="retry-waste", event="resolved")
        assert resolved["alert"]["value"] == "0"
        assert len(receiver.posts) == 2


def test_unpriced_model_alert_fires_once_and_resolves_after_a_quiet_window(
    tmp_path: Path, receiver: Receiver, client: httpx.Client
) -> None:
    rules = [{"name": "unpriced", "kind": "unpriced_model", "window": "10m"}]
    clock = FakeClock()
    with alerting(tmp_path, rules, webhook={"url": receiver.url}, clock=clock) as server:
        assert server.alerts is not None
        tr = trace_id()
        mystery = llm("mystery-llm", 1_200, 300, provider="acme")
        send(client, server, [
            S(tr, span_id(), name="chat", attrs=mystery),
            S(tr, span_id(), name="chat", attrs=llm("house-llm", 10, 1)),  # priced: no alert
        ])  # fmt: skip
        [fired] = receiver.wait_for(rule="unpriced", event="firing")
        alert = fired["alert"]
        assert alert["key"] == "model=acme/mystery-llm"
        assert alert["trace_id"] == tr
        assert alert["numbers"]["model"] == "mystery-llm"
        assert alert["numbers"]["provider"] == "acme"
        assert (alert["numbers"]["input_tokens"], alert["numbers"]["output_tokens"]) == (1200, 300)
        assert alert["link"] == f"{server.http_url}/#/?range=24h&model=mystery-llm"
        # More spans of it: counted on the firing alert, not sent again.
        clock.now += 5 * MIN
        send(client, server, [S(trace_id(), span_id(), name="chat", attrs=mystery)])
        server.alerts.evaluate()  # 5 minutes since the last one: < 10m, still firing
        [listed] = get(client, server.http_url, "/api/alerts")["firing"]
        assert listed["numbers"]["spans"] == 2
        clock.now += 10 * MIN
        server.alerts.evaluate()
        [resolved] = receiver.wait_for(rule="unpriced", event="resolved")
        assert resolved["alert"]["numbers"]["spans"] == 2
        assert len(receiver.posts) == 2


# --- sinks: a failing or dead webhook -------------------------------------------------------


def test_a_failing_webhook_is_retried_then_the_alert_is_dropped_and_counted(
    tmp_path: Path, receiver: Receiver, client: httpx.Client
) -> None:
    receiver.status = 500
    rules = [{"name": "costly-trace", "kind": "trace_cost", "max_usd": 0.01}]
    webhook = {"url": receiver.url, "max_attempts": 3, "timeout_seconds": 5}
    with alerting(tmp_path, rules, webhook=webhook, finalize_after_seconds=60) as server:
        assert server.alerts is not None and server.alerts.webhook is not None
        server.alerts.webhook.backoff = 0.01  # retries without waiting long
        send(client, server, [S(trace_id(), span_id(), span_id(), "chat", attrs=sonnet())])
        posts = receiver.wait_for(3, rule="costly-trace", event="firing")
        assert len({json.dumps(p, sort_keys=True) for p in posts}) == 1  # the same event
        eventually(
            lambda: metric(client, server, "spanledger_alerts_webhook_dropped") >= 1,
            "a notification dropped",
        )
        assert metric(client, server, "spanledger_alerts_webhook_dropped") == 1
        assert metric(client, server, "spanledger_alerts_webhook_sent") == 0
        assert len(receiver.posts) == 3  # max_attempts, then given up


def test_a_dead_webhook_never_blocks_ingest_and_drops_are_counted(
    tmp_path: Path, client: httpx.Client
) -> None:
    """The webhook accepts connections but never answers (a hung receiver): the sender is
    stuck on one event; the queue (2) fills and the other alerts are dropped, while every
    span is still stored and acknowledged."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(64)  # never accepted: connects, then silence
    url = f"http://127.0.0.1:{hung.getsockname()[1]}/hook"
    rules = [{"name": "any-cost", "kind": "trace_cost", "max_usd": 0}]
    webhook = {"url": url, "timeout_seconds": 30, "max_attempts": 1, "max_queued": 2}
    try:
        with alerting(tmp_path, rules, webhook=webhook, finalize_after_seconds=60) as server:
            traces = [trace_id() for _ in range(20)]
            send(
                client,
                server,
                [S(tr, span_id(), span_id(), "chat", attrs=house(10)) for tr in traces],
            )
            # 20 alerts fired in one batch: one in flight, two queued, the rest dropped.
            assert (
                metric(
                    client,
                    server,
                    'spanledger_alerts_fired_total{rule="any-cost",kind="trace_cost"}',
                )
                == 20
            )
            assert metric(client, server, "spanledger_alerts_webhook_dropped") >= 17
            assert metric(client, server, "spanledger_alerts_webhook_queued") <= 2
            # Ingest goes on: more spans are acknowledged and stored.
            more = [S(trace_id(), span_id(), span_id(), "chat", attrs=house(10)) for _ in range(50)]
            send(client, server, more)
            assert metric(client, server, "spanledger_spans_stored") == 70
            assert metric(client, server, "spanledger_alerts_webhook_dropped") >= 67
            assert len(get(client, server.http_url, "/api/alerts")["firing"]) == 70
            hung.close()  # the stuck POST fails now, so shutdown does not wait for it
    finally:
        hung.close()


# --- the API ----------------------------------------------------------------------------------


def test_api_alerts_needs_the_token_and_is_empty_without_rules(
    tmp_path: Path, client: httpx.Client
) -> None:
    with alerting(tmp_path, [], token="s3cret") as server:
        assert client.get(f"{server.http_url}/api/alerts").status_code == 401
        answer = client.get(
            f"{server.http_url}/api/alerts", headers={"authorization": "Bearer s3cret"}
        )
        assert answer.status_code == 200
        assert answer.json() == {"firing": [], "resolved": [], "rules": []}


def test_api_alerts_without_an_alerts_section(tmp_path: Path, client: httpx.Client) -> None:
    server = Server.build(config(tmp_path)).start()
    try:
        assert server.alerts is None
        assert get(client, server.http_url, "/api/alerts") == {
            "firing": [],
            "resolved": [],
            "rules": [],
        }
    finally:
        server.close()


def test_links_use_the_configured_dashboard_url(
    tmp_path: Path, receiver: Receiver, client: httpx.Client
) -> None:
    rules = [{"name": "costly-trace", "kind": "trace_cost", "max_usd": 0}]
    server = Server.build(
        config(
            tmp_path,
            alerts={"rules": rules, "dashboard_url": "https://ledger.example.com/"},
        )
    ).start()
    try:
        tr = trace_id()
        send(client, server, [S(tr, span_id(), span_id(), "chat", attrs=house(10))])
        [alert] = get(client, server.http_url, "/api/alerts")["firing"]
        assert alert["link"] == f"https://ledger.example.com/#/trace/{tr}"
    finally:
        server.close()


# --- configuration errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"name": "x", "kind": "trace_cost"}, "a trace_cost rule needs max_usd"),
        ({"name": "x", "kind": "spend_rate", "scope": "agent"}, "needs min_usd"),
        ({"name": "x", "kind": "loop", "window": "5m"}, "a loop rule does not take window"),
        ({"name": "x", "kind": "spend_rate", "scope": "team", "min_usd": 1},
         "scope 'team' is not a dimension"),
        ({"name": "x", "kind": "spend_rate", "window": "5 minutes", "min_usd": 1},
         "'5 minutes' is not a duration"),
        ({"name": "x", "kind": "spend_rate", "window": "1h", "baseline": "5m", "min_usd": 1},
         "baseline (300s) must be at least the window (3600s)"),
        ({"name": "x", "kind": "retry_share", "max_share": 1.5}, "max_share"),
        ({"name": "x", "kind": "spend_rate", "min_usd": 1, "ratio": 0.5}, "ratio"),
        ({"name": "x", "kind": "budget"}, "kind"),
        ({"name": "", "kind": "loop"}, "name"),
    ],
)  # fmt: skip
def test_an_invalid_rule_is_a_config_error_that_says_what_is_wrong(
    tmp_path: Path, rule: dict[str, Any], message: str
) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(json.dumps({"alerts": {"rules": [rule]}}), encoding="utf-8")  # JSON is YAML
    with pytest.raises(ConfigError, match=re.escape(message)):
        ServeConfig.load(path)


def test_rule_names_are_unique_and_custom_dimensions_are_scopes(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    twice = {"rules": [{"name": "a", "kind": "loop"}, {"name": "a", "kind": "unpriced_model"}]}
    path.write_text(json.dumps({"alerts": twice}), encoding="utf-8")
    with pytest.raises(ConfigError, match="repeated: a"):
        ServeConfig.load(path)
    team = {"name": "t", "kind": "spend_rate", "scope": "team", "min_usd": 1}
    path.write_text(
        "attribution: {team: [acme.team]}\n" + f"alerts: {json.dumps({'rules': [team]})}\n",
        encoding="utf-8",
    )
    rule = ServeConfig.load(path).alerts.rules[0]  # type: ignore[union-attr]
    assert (rule.scope, rule.window, rule.baseline, rule.ratio) == ("team", 300, 3600, 3)
