"""The JSON API and /metrics of a real server, against a small dataset whose every number is
worked out by hand from the pinned sheet in `serverkit.RATES`.

Femto-$ per token: gpt-4o-mini 150e6 in / 75e6 cache read / 600e6 out;
claude-sonnet-4-5 3e9 in / 300e6 cache read / 3.75e9 cache write / 15e9 out;
house-llm 2e9 in / 8e9 out. 10^15 femto-$ = $1.

Trace A (2026-11-02 09:00, user alice, department research, agent planner), root first:
  a1 chat gpt-4o-mini 1000 in (400 cached) / 200 out:
      600*150e6 + 400*75e6 + 200*600e6 = 90e9 + 30e9 + 120e9            =   240e9
  r  invoke_agent researcher (agent researcher), no usage
  r1   chat claude-sonnet-4-5 2000 in (1000 cache read, 500 cache write) / 300 out:
      500*3e9 + 1000*300e6 + 500*3.75e9 + 300*15e9
      = 1.5e12 + 0.3e12 + 1.875e12 + 4.5e12                              = 8.175e12
      saved by cache: 1000 * (3e9 - 300e6)                               = 2.7e12
  f  chat house-llm 100 in / 0 out, status ERROR: 100*2e9                =   200e9 (retry)
  g  chat house-llm 100 in / 50 out (the retry): 200e9 + 50*8e9           =   600e9
  trace A = 240e9 + 8.175e12 + 200e9 + 600e9                             = 9.215e12 ($0.009215)
Trace B (2026-11-03 10:00, user bob, department support, agent helpdesk):
  b1 chat gpt-4o-mini 500 in / 100 out: 75e9 + 60e9                      =   135e9
  b2 chat mystery-model (provider acme) 700 in / 300 out                 = unpriced
  11 x execute_tool lookup under the root: a loop (threshold 10)
  trace B = 135e9 ($0.000135)
Trace C (2026-11-03 12:00, user alice, no department, no agent), a lone LLM root:
  c  chat house-llm 10 in / 5 out: 20e9 + 40e9                           =    60e9 ($0.00006)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from serverkit import S, get, llm, post, request, running, span_id, trace_id
from spanledger.server.run import Server

DAY = 24 * 3600 * 1000  # ms

TRACE_A, TRACE_B, TRACE_C = trace_id(), trace_id(), trace_id()
A_ROOT, A1, A_RESEARCH, A_R1, A_FAIL, A_RETRY = (span_id() for _ in range(6))
B_ROOT, B1, B2 = span_id(), span_id(), span_id()
B_LOOKUPS = [span_id() for _ in range(11)]
C_ROOT = span_id()


def dataset() -> list[list[S]]:
    """The three traces, in three requests sent children first."""
    a = [
        S(
            TRACE_A,
            A_ROOT,
            name="invoke_agent planner",
            end=100,
            attrs={
                "user.id": "alice",
                "spanledger.department": "research",
                "gen_ai.agent.name": "planner",
                "gen_ai.operation.name": "invoke_agent",
            },
        ),
        S(
            TRACE_A,
            A1,
            A_ROOT,
            "chat gpt-4o-mini",
            start=1,
            end=10,
            attrs=llm("gpt-4o-mini", 1000, 200, provider="openai", cache_read=400),
        ),
        S(
            TRACE_A,
            A_RESEARCH,
            A_ROOT,
            "invoke_agent researcher",
            start=11,
            end=50,
            attrs={"gen_ai.agent.name": "researcher", "gen_ai.operation.name": "invoke_agent"},
        ),
        S(
            TRACE_A,
            A_R1,
            A_RESEARCH,
            "chat claude-sonnet-4-5",
            start=12,
            end=40,
            attrs=llm(
                "claude-sonnet-4-5",
                2000,
                300,
                provider="anthropic",
                cache_read=1000,
                cache_write=500,
            ),
        ),
        S(
            TRACE_A,
            A_FAIL,
            A_ROOT,
            "chat house-llm",
            start=51,
            end=60,
            status=2,
            attrs=llm("house-llm", 100, 0, provider="house", **{"error.type": "timeout"}),
        ),
        S(
            TRACE_A,
            A_RETRY,
            A_ROOT,
            "chat house-llm",
            start=61,
            end=70,
            attrs=llm("house-llm", 100, 50, provider="house"),
        ),
    ]
    b_start = DAY + 3600 * 1000  # 2026-11-03T10:00Z
    b = [
        S(
            TRACE_B,
            B_ROOT,
            name="invoke_agent helpdesk",
            start=b_start,
            end=b_start + 500,
            attrs={
                "user.id": "bob",
                "spanledger.department": "support",
                "gen_ai.agent.name": "helpdesk",
            },
        ),
        S(
            TRACE_B,
            B1,
            B_ROOT,
            "chat gpt-4o-mini",
            start=b_start + 1,
            end=b_start + 9,
            attrs=llm("gpt-4o-mini", 500, 100, provider="openai"),
        ),
        S(
            TRACE_B,
            B2,
            B_ROOT,
            "chat mystery-model",
            start=b_start + 10,
            end=b_start + 19,
            attrs=llm("mystery-model", 700, 300, provider="acme"),
        ),
        *(
            S(
                TRACE_B,
                lookup,
                B_ROOT,
                "execute_tool lookup",
                start=b_start + 20 + i,
                end=b_start + 21 + i,
                attrs={"gen_ai.tool.name": "lookup", "gen_ai.operation.name": "execute_tool"},
            )
            for i, lookup in enumerate(B_LOOKUPS)
        ),
    ]
    c_start = DAY + 3 * 3600 * 1000  # 2026-11-03T12:00Z
    c = [
        S(TRACE_C, C_ROOT, name="chat house-llm", start=c_start, end=c_start + 250,
          attrs=llm("house-llm", 10, 5, provider="house", **{"user.id": "alice"})),
    ]  # fmt: skip
    return [list(reversed(a)), list(reversed(b)), c]


SPANS_SENT = 6 + 14 + 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("api")) as started, httpx.Client() as client:
        for batch in dataset():
            assert post(client, started.http_url, request(batch)).status_code == 200
        started.pipeline.flush(finalize=True)
        yield started


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as http:
        yield http


def api(client: httpx.Client, server: Server, path: str, **params: Any) -> dict[str, Any]:
    return get(client, server.http_url, path, **params)


def trace_ids(client: httpx.Client, server: Server, **params: Any) -> list[str]:
    return [t["trace_id"] for t in api(client, server, "/api/traces", **params)["traces"]]


# --- /api/traces -------------------------------------------------------------------------


def test_traces_newest_first_with_cost_root_user_duration_and_flags(
    server: Server, client: httpx.Client
) -> None:
    traces = api(client, server, "/api/traces")["traces"]
    assert [t["trace_id"] for t in traces] == [TRACE_C, TRACE_B, TRACE_A]
    c, b, a = traces
    assert (a["cost"], b["cost"], c["cost"]) == ("0.009215", "0.000135", "0.00006")
    assert (a["root_name"], b["root_name"], c["root_name"]) == (
        "invoke_agent planner",
        "invoke_agent helpdesk",
        "chat house-llm",
    )
    assert (a["user_id"], b["user_id"], c["user_id"]) == ("alice", "bob", "alice")
    assert a["department"] == "research"
    assert a["start_time"] == "2026-11-02T09:00:00Z"

    def duration_ms(t: dict[str, Any]) -> float:
        start = dt.datetime.fromisoformat(t["start_time"].replace("Z", "+00:00"))
        end = dt.datetime.fromisoformat(t["end_time"].replace("Z", "+00:00"))
        return (end - start) / dt.timedelta(milliseconds=1)

    assert (duration_ms(a), duration_ms(b), duration_ms(c)) == (100, 500, 250)
    # flags: A retried a failed call (its $0.0002 is overhead), B looped and has an
    # unpriced call, everything is a complete tree
    assert (a["retry_overhead"], b["retry_overhead"]) == ("0.0002", "0")
    assert (a["loops"], b["loops"], c["loops"]) == (0, 1, 0)
    assert (a["unpriced"], b["unpriced"]) == (0, 1)
    assert (a["spans"], b["spans"], c["spans"]) == (6, 14, 1)
    assert (a["llm_calls"], b["llm_calls"], c["llm_calls"]) == (4, 2, 1)
    assert a["complete"] and b["complete"] and c["complete"]
    assert a["models"] == ["claude-sonnet-4-5", "gpt-4o-mini", "house-llm"]
    assert a["agents"] == ["planner", "researcher"]
    assert b["loop_cost"] == "0"  # the looping tool calls cost nothing themselves


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"user": "alice"}, ["C", "A"]),
        ({"user": "bob"}, ["B"]),
        ({"user": "nobody"}, []),
        ({"agent": "researcher"}, ["A"]),  # an agent anywhere in the trace
        ({"agent": "helpdesk"}, ["B"]),
        ({"model": "claude-sonnet-4-5"}, ["A"]),
        ({"model": "house-llm"}, ["C", "A"]),
        ({"min_cost": "0.001"}, ["A"]),
        ({"min_cost": "0.000135"}, ["B", "A"]),  # inclusive
        ({"min_cost": "0.00013500000001"}, ["A"]),
        ({"from": "2026-11-03"}, ["C", "B"]),
        ({"to": "2026-11-03"}, ["A"]),  # exclusive
        ({"from": "2026-11-03T10:00:00Z", "to": "2026-11-03T11:00:00Z"}, ["B"]),
        ({"from": "2026-11-03T11:00:00+01:00"}, ["C", "B"]),  # 10:00Z
        ({"limit": "1"}, ["C"]),
        ({"limit": "2", "user": "alice"}, ["C", "A"]),
        ({"department": "research"}, ["A"]),
    ],
)
def test_trace_filters(
    server: Server, client: httpx.Client, params: dict[str, str], expected: list[str]
) -> None:
    names = {TRACE_A: "A", TRACE_B: "B", TRACE_C: "C"}
    assert [names[t] for t in trace_ids(client, server, **params)] == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "ten"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"from": "yesterday"}, "from"),
        ({"min_cost": "cheap"}, "min_cost"),
    ],
)
def test_bad_trace_query_is_400_with_a_message(
    server: Server, client: httpx.Client, params: dict[str, str], message: str
) -> None:
    response = client.get(f"{server.http_url}/api/traces", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


# --- /api/traces/{id} --------------------------------------------------------------------


def test_trace_tree_with_self_and_rollup_cost_usage_cache_and_retry(
    server: Server, client: httpx.Client
) -> None:
    detail = api(client, server, f"/api/traces/{TRACE_A}")
    assert detail["finalized"] is True
    assert detail["trace"]["cost"] == "0.009215"
    spans = {span["span_id"]: span for span in detail["spans"]}
    assert set(spans) == {A_ROOT, A1, A_RESEARCH, A_R1, A_FAIL, A_RETRY}
    # the tree: parents, depth and agent path
    assert spans[A_R1]["parent_span_id"] == A_RESEARCH
    assert (spans[A_ROOT]["depth"], spans[A_RESEARCH]["depth"], spans[A_R1]["depth"]) == (0, 1, 2)
    assert spans[A_R1]["agent_path"] == "planner/researcher"
    # self cost vs rollup
    assert (spans[A_ROOT]["cost"], spans[A_ROOT]["rollup"]) == ("0", "0.009215")
    assert (spans[A_RESEARCH]["cost"], spans[A_RESEARCH]["rollup"]) == ("0", "0.008175")
    assert (spans[A_R1]["cost"], spans[A_R1]["rollup"]) == ("0.008175", "0.008175")
    # the cost split and the usage behind it
    r1 = spans[A_R1]
    assert (r1["cost_input"], r1["cost_cache_read"], r1["cost_cache_write"], r1["cost_output"]) == (
        "0.0015",
        "0.0003",
        "0.001875",
        "0.0045",
    )
    assert (r1["input_uncached"], r1["cache_read"], r1["cache_write"], r1["output"]) == (
        500,
        1000,
        500,
        300,
    )
    assert r1["saved_by_cache"] == "0.0027"
    assert r1["cache_status"] == "partial"
    assert r1["price_status"] == "priced"
    assert r1["price_source"] == "server-tests-2026"
    assert r1["usage_source"] == "otel_genai"
    assert spans[A1]["cache_status"] == "partial"
    assert spans[A_RETRY]["cache_status"] == "miss"
    assert spans[A_ROOT]["price_status"] is None  # not an LLM call
    # the failed attempt is flagged as retried; its cost is overhead
    assert (spans[A_FAIL]["retry"], spans[A_RETRY]["retry"]) == (True, False)
    assert spans[A_FAIL]["cost"] == "0.0002"
    assert not any(span["loop"] for span in spans.values())
    # original attributes, as JSON
    assert spans[A_R1]["attributes"]["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert spans[A_R1]["resource"] == {"service.name": "svc-tests"}


def test_trace_tree_flags_the_loop(server: Server, client: httpx.Client) -> None:
    detail = api(client, server, f"/api/traces/{TRACE_B}")
    spans = {span["span_id"]: span for span in detail["spans"]}
    assert all(spans[lookup]["loop"] for lookup in B_LOOKUPS)
    assert not spans[B1]["loop"] and not spans[B_ROOT]["loop"]
    assert detail["trace"]["loops"] == 1
    assert spans[B2]["price_status"] == "unpriced"
    assert spans[B2]["cost"] == "0"
    assert "mystery-model" in spans[B2]["price_reason"]


def test_unknown_trace_is_404(server: Server, client: httpx.Client) -> None:
    response = client.get(f"{server.http_url}/api/traces/{'0f' * 16}")
    assert response.status_code == 404
    assert response.json() == {"error": "not found"}


def test_trace_id_lookup_is_case_insensitive(server: Server, client: httpx.Client) -> None:
    detail = api(client, server, f"/api/traces/{TRACE_C.upper()}")
    assert detail["trace"]["trace_id"] == TRACE_C


def test_malformed_trace_id_is_404_not_500(tmp_path: Path) -> None:
    with running(tmp_path) as server, httpx.Client(timeout=30) as own:
        statuses = {bad: own.get(f"{server.http_url}/api/traces/{bad}").status_code
                    for bad in ("not-hex", "zz" * 16, "abc")}  # fmt: skip
    # Asserted only once the server is closed: a 500 makes uvicorn log a traceback from its
    # thread, and CPython 3.11's traceback formatting (ast.parse) must not race pytest's.
    assert set(statuses.values()) <= {400, 404}, statuses


# --- /api/costs --------------------------------------------------------------------------


def costs(client: httpx.Client, server: Server, group_by: str, **params: Any) -> dict[Any, Any]:
    answer = api(client, server, "/api/costs", group_by=group_by, **params)
    keys = group_by.split(",")
    return {
        (row[keys[0]] if len(keys) == 1 else tuple(row[k] for k in keys)): row["cost"]
        for row in answer["rows"]
    }


def test_costs_totals(server: Server, client: httpx.Client) -> None:
    answer = api(client, server, "/api/costs")
    # all LLM spans together: 9.215e12 + 135e9 + 60e9 = 9.41e12
    assert answer["rows"] == [
        {
            "cost": "0.00941",
            "saved_by_cache": "0.00273",  # 2.7e12 (claude) + 400 * 75e6 = 30e9 (gpt) -> 2.73e12
            "retry_overhead": "0.0002",
            "calls": 7,
            "unpriced_calls": 1,
            # 1000 + 2000 + 100 + 100 + 500 + 700 + 10
            "input_tokens": 4410,
            "cache_read_tokens": 1400,
            "output_tokens": 200 + 300 + 0 + 50 + 100 + 300 + 5,
        }
    ]
    assert answer["totals"] == {"spans": SPANS_SENT, "traces": 3, "cost": "0.00941"}


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        # alice = A + C = 9.215e12 + 60e9; bob = 135e9 (+ an unpriced call at 0)
        ("user", {"alice": "0.009275", "bob": "0.000135"}),
        # gpt-4o-mini 240e9 + 135e9; house-llm 200e9 + 600e9 + 60e9
        (
            "model",
            {
                "claude-sonnet-4-5": "0.008175",
                "house-llm": "0.00086",
                "gpt-4o-mini": "0.000375",
                "mystery-model": "0",
            },
        ),
        (
            "provider",
            {"anthropic": "0.008175", "house": "0.00086", "openai": "0.000375", "acme": "0"},
        ),
        ("department", {"research": "0.009215", "support": "0.000135", None: "0.00006"}),
        # planner: 240e9 + 200e9 + 600e9 = 1.04e12; researcher: 8.175e12
        (
            "agent",
            {
                "researcher": "0.008175",
                "planner": "0.00104",
                "helpdesk": "0.000135",
                None: "0.00006",
            },
        ),
        # day 2: 135e9 + 60e9 = 195e9
        ("day", {"2026-11-02": "0.009215", "2026-11-03": "0.000195"}),
        (
            "user,model",
            {
                ("alice", "claude-sonnet-4-5"): "0.008175",
                ("alice", "house-llm"): "0.00086",
                ("alice", "gpt-4o-mini"): "0.00024",
                ("bob", "gpt-4o-mini"): "0.000135",
                ("bob", "mystery-model"): "0",
            },
        ),
        (
            "department,day",
            {
                ("research", "2026-11-02"): "0.009215",
                ("support", "2026-11-03"): "0.000135",
                (None, "2026-11-03"): "0.00006",
            },
        ),
    ],
)
def test_costs_grouped_equal_hand_derived_sums(
    server: Server, client: httpx.Client, group_by: str, expected: dict[Any, str]
) -> None:
    assert costs(client, server, group_by) == expected
    total = sum(Decimal(cost) for cost in expected.values())
    assert total == Decimal("0.00941")


def test_costs_rows_are_ordered_by_cost_and_carry_call_counts(
    server: Server, client: httpx.Client
) -> None:
    rows = api(client, server, "/api/costs", group_by="model")["rows"]
    assert [row["model"] for row in rows] == [
        "claude-sonnet-4-5",
        "house-llm",
        "gpt-4o-mini",
        "mystery-model",
    ]
    by_model = {row["model"]: row for row in rows}
    assert by_model["house-llm"]["calls"] == 3
    assert by_model["house-llm"]["retry_overhead"] == "0.0002"
    assert by_model["mystery-model"]["unpriced_calls"] == 1
    assert by_model["claude-sonnet-4-5"]["saved_by_cache"] == "0.0027"


def test_costs_with_filters(server: Server, client: httpx.Client) -> None:
    assert costs(client, server, "model", user="alice", **{"from": "2026-11-03"}) == {
        "house-llm": "0.00006"
    }
    assert costs(client, server, "user", model="gpt-4o-mini") == {
        "alice": "0.00024",
        "bob": "0.000135",
    }
    assert costs(client, server, "user", to="2026-11-02T09:00:00Z") == {}


@pytest.mark.parametrize("group_by", ["colour", "user,colour", "user;model"])
def test_costs_bad_group_by_is_400_naming_the_choices(
    server: Server, client: httpx.Client, group_by: str
) -> None:
    response = client.get(f"{server.http_url}/api/costs", params={"group_by": group_by})
    assert response.status_code == 400
    message = response.json()["error"]
    assert "cannot group by" in message
    assert "user" in message and "model" in message and "day" in message


# --- /api/unpriced and /metrics ----------------------------------------------------------


# --- /api/spans -------------------------------------------------------------------------


def test_spans_page_through_every_llm_span_once_in_start_order(
    server: Server, client: httpx.Client
) -> None:
    """7 LLM spans (a1, r1, f, g; b1, b2; c): pages of 2 give them all, in the order of
    one big page, and `next` is null on the last page. The tool and agent spans are not
    LLM calls. Costs as derived above: a1 240e9 = $0.00024, c 60e9 = $0.00006."""
    whole = api(client, server, "/api/spans", limit=100)
    assert whole["total"] == 7 and whole["next"] is None
    ids = [span["span_id"] for span in whole["spans"]]
    assert sorted(ids) == sorted([A1, A_R1, A_FAIL, A_RETRY, B1, B2, C_ROOT])
    starts = [span["start_time"] for span in whole["spans"]]
    assert starts == sorted(starts)

    paged: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    pages = 0
    while True:
        page = api(client, server, "/api/spans", **params)
        pages += 1
        assert ("total" in page) == (pages == 1)
        paged += [span["span_id"] for span in page["spans"]]
        if page["next"] is None:
            break
        params["after"] = page["next"]
    assert (pages, paged) == (4, ids)

    by_id = {span["span_id"]: span for span in whole["spans"]}
    assert (by_id[A1]["cost"], by_id[C_ROOT]["cost"]) == ("0.00024", "0.00006")
    assert by_id[B2]["price_status"] == "unpriced"
    assert by_id[A1]["user_id"] == "alice"


def test_spans_in_a_time_window_and_bad_cursors(server: Server, client: httpx.Client) -> None:
    day_two = api(client, server, "/api/spans", **{"from": "2026-11-03"})
    assert {span["span_id"] for span in day_two["spans"]} == {B1, B2, C_ROOT}
    for bad in ("x", "1.2.3", f"12.{TRACE_A}.nothex!!", f"-5.{TRACE_A}.{A1}"):
        response = client.get(f"{server.http_url}/api/spans", params={"after": bad})
        assert response.status_code == 400, bad
        assert "cursor" in response.json()["error"]


def test_unpriced_lists_the_unknown_model_with_its_token_volume(
    server: Server, client: httpx.Client
) -> None:
    models = api(client, server, "/api/unpriced")["models"]
    assert len(models) == 1
    (row,) = models
    assert (row["model"], row["provider"], row["spans"]) == ("mystery-model", "acme", 1)
    assert (row["input_tokens"], row["output_tokens"]) == (700, 300)
    assert "no price for mystery-model" in row["reason"]
    assert row["last_seen"] == "2026-11-03T10:00:00.010000Z"
    assert api(client, server, "/api/unpriced", to="2026-11-03")["models"] == []


def test_metrics(server: Server, client: httpx.Client) -> None:
    text = client.get(f"{server.http_url}/metrics").text
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert values["spanledger_spans_received"] == str(SPANS_SENT)
    assert values["spanledger_spans_stored"] == str(SPANS_SENT)
    assert values["spanledger_spans_rejected"] == "0"
    assert values["spanledger_traces_finalized"] == "3"
    assert values["spanledger_queued_spans"] == "0"
    assert values["spanledger_open_traces"] == "0"
    assert values["spanledger_requests_total"] == "3"

    def cost(provider: str, model: str, status: str = "priced") -> float:
        labels = f'provider="{provider}",model="{model}",price_status="{status}"'
        return float(values[f"spanledger_cost_usd_total{{{labels}}}"])

    assert cost("openai", "gpt-4o-mini") == float(Decimal("0.000375"))
    assert cost("anthropic", "claude-sonnet-4-5") == float(Decimal("0.008175"))
    assert cost("house", "house-llm") == float(Decimal("0.00086"))
    assert cost("acme", "mystery-model", "unpriced") == 0.0
    assert "# TYPE spanledger_queued_spans gauge" in text


# --- late spans and inherited attribution (their own servers) ----------------------------


def test_late_span_after_finalization_updates_the_trace_once(tmp_path: Path) -> None:
    """Root + one call, finalized; then a late call under the root arrives (twice).

    first call house-llm 1000/100: 2e12 + 0.8e12 = 2.8e12 ($0.0028)
    late call gpt-4o-mini 2000/1000: 300e9 + 600e9 = 900e9 ($0.0009)
    after: 3.7e12 ($0.0037)"""
    tr, root, first, late = trace_id(), span_id(), span_id(), span_id()
    with running(tmp_path) as server, httpx.Client(timeout=30) as client:
        url = server.http_url
        body = request(
            [
                S(tr, root, name="root", end=100, attrs={"user.id": "carol"}),
                S(tr, first, root, "chat", start=1, end=5, attrs=llm("house-llm", 1000, 100)),
            ]
        )
        assert post(client, url, body).status_code == 200
        server.pipeline.flush(finalize=True)
        before = get(client, url, f"/api/traces/{tr}")
        assert (before["trace"]["cost"], before["trace"]["spans"]) == ("0.0028", 2)

        late_body = request(
            [S(tr, late, root, "chat", start=50, end=60,
               attrs=llm("gpt-4o-mini", 2000, 1000, provider="openai"))]
        )  # fmt: skip
        for _ in range(2):
            assert post(client, url, late_body).status_code == 200
            server.pipeline.flush(finalize=True)
        after = get(client, url, f"/api/traces/{tr}")
        assert (after["trace"]["cost"], after["trace"]["spans"]) == ("0.0037", 3)
        assert after["trace"]["llm_calls"] == 2
        spans = {span["span_id"]: span for span in after["spans"]}
        assert spans[root]["rollup"] == "0.0037"
        assert spans[late]["user_id"] == "carol"  # inherited on re-finalization
        assert spans[late]["finalized"] is True
        assert get(client, url, "/api/costs")["totals"] == {
            "spans": 3,
            "traces": 1,
            "cost": "0.0037",
        }
        assert get(client, url, "/api/costs", group_by="user")["rows"][0]["cost"] == "0.0037"
        assert [t["cost"] for t in get(client, url, "/api/traces")["traces"]] == ["0.0037"]


def test_attribution_set_only_on_the_root_reaches_every_llm_span(tmp_path: Path) -> None:
    """user/department/tenant only on the root; LLM calls two and three levels down.
    Before finalization the calls' rows carry only their own attributes; after it, each
    has the root's user. Costs: 3 x house-llm 10/10 = 3 x (20e9 + 80e9) = 300e9."""
    tr, root, agent, tool = trace_id(), span_id(), span_id(), span_id()
    calls = [span_id() for _ in range(3)]
    spans = [
        S(tr, root, name="root", end=100,
          attrs={"enduser.id": "dave", "team": "sales", "tenant.id": "acme"}),
        S(tr, agent, root, "invoke_agent worker", start=1, end=90,
          attrs={"gen_ai.agent.name": "worker"}),
        S(tr, tool, agent, "execute_tool search", start=2, end=80,
          attrs={"gen_ai.tool.name": "search"}),
        S(tr, calls[0], agent, "chat", start=3, end=4, attrs=llm("house-llm", 10, 10)),
        S(tr, calls[1], tool, "chat", start=5, end=6, attrs=llm("house-llm", 10, 10)),
        S(tr, calls[2], tool, "chat", start=7, end=8,
          attrs=llm("house-llm", 10, 10, **{"user.id": "erin"})),  # its own user wins
    ]  # fmt: skip
    with (
        running(tmp_path, finalize_after_seconds=3600) as server,
        httpx.Client(timeout=30) as client,
    ):
        url = server.http_url
        assert post(client, url, request(list(reversed(spans)))).status_code == 200
        server.pipeline.flush()  # stored, not finalized
        raw = {span["span_id"]: span for span in get(client, url, f"/api/traces/{tr}")["spans"]}
        assert raw[calls[0]]["user_id"] is None
        assert raw[calls[0]]["finalized"] is False

        server.pipeline.flush(finalize=True)
        rows = {span["span_id"]: span for span in get(client, url, f"/api/traces/{tr}")["spans"]}
        assert [rows[call]["user_id"] for call in calls] == ["dave", "dave", "erin"]
        assert {rows[call]["department"] for call in calls} == {"sales"}
        assert {rows[call]["tenant"] for call in calls} == {"acme"}
        assert {rows[call]["agent"] for call in calls} == {"worker"}
        assert costs(client, server, "user") == {"dave": "0.0002", "erin": "0.0001"}
        assert costs(client, server, "department") == {"sales": "0.0003"}
        assert [t["trace_id"] for t in get(client, url, "/api/traces", user="dave")["traces"]] == [
            tr
        ]
