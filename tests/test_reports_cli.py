"""`spanledger report`, `trace` and `export` against a real ledger, run as a user runs them.

The ledger is a DuckDB file filled by the real ingest pipeline (`Pipeline` + `DuckDBStore`,
children submitted before their parents, then finalized), priced only from the pinned
sheet below. The same file is then read two ways: directly (`--db`, read-only) and
through a real running server (`--url`), which must give identical answers.

Rates are USD per million tokens (femto-dollars: $1/M = 10^9 per token):

    model      provider  input  cache_read  cache_write  output
    model-a    openai    2      0.5         (input)      8
    model-b    anthropic 3      0.3         3.75         15
    house-llm  (any)     4      (input)     (input)      4

The workload, with each LLM span's cost worked out by hand (OTel GenAI usage: input
tokens include cached and cache-written tokens):

trace A (u-1, eng, agent supervisor), 2026-11-02 09:00Z
  a1 handle ticket                      root: user.id u-1, department eng, agent supervisor
  a2   chat model-a   10,000 in (4,000 cache reads), 500 out
                       6,000 x 2 + 4,000 x 0.5 + 500 x 8 = $0.018; saved 4,000 x 1.5 = $0.006
  a3   invoke_agent research             agent research (inherited by everything below)
  a4     chat model-b 3,000 in (1,000 cache writes), 200 out
                       2,000 x 3 + 1,000 x 3.75 + 200 x 15 = $0.01275
  a5     chat model-a 1,000 in, 0 out, failed (429)   1,000 x 2 = $0.002  -> retry
  a6     chat model-a 1,000 in, 100 out               $0.002 + $0.0008 = $0.0028
  a8..a10 execute_tool search x3 (no cost; more than the loop threshold 2 -> loop)
  a7   chat mystery-model 100 in, 7 out              unpriced: no cost, never $0
  trace A: $0.018 + $0.01275 + $0.002 + $0.0028 = $0.03555, retry overhead $0.002
trace B (u-2, sales, agent support, tenant t-9), 09:20Z
  b2   chat house-llm 1,500 in, 500 out   2,000 x 4 = $0.008 (one rate for every token)
trace C (u-1, eng, agent supervisor), 10:30Z
  c2   chat model-b   1,000 in, 1,000 out  1,000 x 3 + 1,000 x 15 = $0.018

Ledger total: $0.03555 + $0.008 + $0.018 = $0.06155.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spanledger.pricing import PriceBook, RateSheet
from spanledger.server.config import GrpcListener, ServeConfig
from spanledger.server.pipeline import Pipeline
from spanledger.server.run import Server
from spanledger.spans import STATUS_ERROR, SpanRecord
from spanledger.store.duckdb import DuckDBStore

SPANLEDGER = Path(sys.executable).parent / "spanledger"
SHEET = """\
version: reports-test-2026
models:
  - match: model-a
    provider: openai
    per_million: {input: 2, cache_read: 0.5, output: 8}
  - match: model-b
    provider: anthropic
    per_million: {input: 3, cache_read: 0.3, cache_write: 3.75, output: 15}
  - match: house-llm
    per_million: {input: 4, output: 4}
"""
TOKEN = "s3cret-reports"
T0 = 1_793_610_000_000_000_000  # 2026-11-02T09:00:00Z in ns
SECOND = 10**9
MINUTE = 60 * SECOND
TA = "4bf92f3577b34da6a3ce929d0e0e4736"
TB = "5c0a3f1e2d4b4c6e8f9a0b1c2d3e4f50"
TC = "6d1b4f2e3c5a4d7f9e0a1b2c3d4e5f61"
RESOURCE = {"service.name": "svc-api"}
TOTAL = Decimal("0.06155")


def sid(name: str) -> str:
    """A readable span id: 'a2' -> 00000000000000a2."""
    return name.rjust(16, "0")


def chat(model: str, provider: str | None, input_tokens: int, output_tokens: int, **extra: Any):
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        **extra,
    }
    if provider:
        attrs["gen_ai.provider.name"] = provider
    return attrs


def span(
    trace: str, name: str, parent: str, title: str, at: int, attrs: dict[str, Any], **kw: Any
) -> SpanRecord:
    return SpanRecord(
        trace_id=trace,
        span_id=sid(name),
        parent_span_id=sid(parent) if parent else "",
        name=title,
        start_ns=at,
        end_ns=at + SECOND // 2,
        attributes=attrs,
        resource=RESOURCE,
        **kw,
    )


def workload() -> tuple[list[SpanRecord], list[SpanRecord]]:
    """(children, parents): the children batch is submitted first."""
    root_a = {"user.id": "u-1", "department": "eng", "gen_ai.agent.name": "supervisor"}
    children = [
        span(TA, "a2", "a1", "chat model-a", T0 + 1 * SECOND,
             chat("model-a", "openai", 10_000, 500,
                  **{"gen_ai.usage.cache_read.input_tokens": 4_000})),
        span(TA, "a4", "a3", "chat model-b", T0 + 3 * SECOND,
             chat("model-b", "anthropic", 3_000, 200,
                  **{"gen_ai.usage.cache_creation.input_tokens": 1_000})),
        span(TA, "a5", "a3", "chat model-a", T0 + 4 * SECOND,
             chat("model-a", "openai", 1_000, 0, **{"error.type": "429"}),
             status_code=STATUS_ERROR),
        span(TA, "a6", "a3", "chat model-a", T0 + 5 * SECOND,
             chat("model-a", "openai", 1_000, 100)),
        *(
            span(TA, f"a{n}", "a3", "execute_tool search", T0 + (n - 2) * SECOND,
                 {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"})
            for n in (8, 9, 10)
        ),
        span(TA, "a7", "a1", "chat mystery", T0 + 9 * SECOND,
             chat("mystery-model", None, 100, 7)),
        span(TB, "b2", "b1", "chat house-llm", T0 + 20 * MINUTE + SECOND,
             chat("house-llm", "acme", 1_500, 500)),
        span(TC, "c2", "c1", "chat model-b", T0 + 90 * MINUTE + SECOND,
             chat("model-b", "anthropic", 1_000, 1_000)),
    ]  # fmt: skip
    parents = [
        span(TA, "a1", "", "handle ticket", T0, root_a),
        span(TA, "a3", "a1", "invoke_agent research", T0 + 2 * SECOND,
             {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "research"}),
        span(TB, "b1", "", "answer", T0 + 20 * MINUTE,
             {"user.id": "u-2", "department": "sales", "gen_ai.agent.name": "support",
              "tenant.id": "t-9"}),
        span(TC, "c1", "", "handle ticket", T0 + 90 * MINUTE, root_a),
    ]  # fmt: skip
    return children, parents


def build_ledger(path: Path) -> Path:
    """Fill a DuckDB ledger through the real pipeline and finalize every trace."""
    store = DuckDBStore(path)
    book = PriceBook([RateSheet.parse(SHEET, name="reports-test")], use_defaults=False)
    pipeline = Pipeline(store, book, loop_threshold=2, finalize_after=3600)
    pipeline.start()
    try:
        for batch in workload():
            assert pipeline.submit(batch).result(30) == len(batch)
        pipeline.flush(finalize=True)
    finally:
        pipeline.stop()
        store.close()
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SPANLEDGER), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def run_json(*args: str | Path) -> Any:
    result = run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@contextlib.contextmanager
def serving(db: Path, sheet: Path) -> Iterator[Server]:
    """A real `spanledger serve` (HTTP API on a free port, bearer token) on `db`."""
    grpc = {"enabled": False} if "enabled" in GrpcListener.model_fields else {"port": 0}
    config = ServeConfig.model_validate(
        {
            "db": str(db),
            "http": {"port": 0},
            "grpc": grpc,
            "token": TOKEN,
            "rates": [str(sheet)],
            "use_default_prices": False,
        }
    )
    server = Server.build(config).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ledger(tmp_path_factory.mktemp("ledger") / "ledger.duckdb")


@pytest.fixture(scope="module")
def server_url(ledger: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server on a copy of the ledger (DuckDB lets one process write a file)."""
    directory = tmp_path_factory.mktemp("served")
    copy = shutil.copy(ledger, directory / "served.duckdb")
    sheet = directory / "rates.yaml"
    sheet.write_text(SHEET, encoding="utf-8")
    with serving(Path(copy), sheet) as server:
        yield server.http_url


def by_key(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[key] for key in keys): row for row in rows}


# -- report -------------------------------------------------------------------------------


def test_report_json_matches_hand_derived_costs(ledger: Path) -> None:
    report = run_json("report", "--group-by", "user,agent", "--db", ledger)
    assert report["group_by"] == ["user", "agent"]
    rows = by_key(report["rows"], "user", "agent")
    assert set(rows) == {("u-1", "supervisor"), ("u-1", "research"), ("u-2", "support")}

    supervisor = rows[("u-1", "supervisor")]  # a2 + c2, and the unpriced a7
    assert Decimal(supervisor["cost_usd"]) == Decimal("0.036")
    assert supervisor["calls"] == 3
    assert supervisor["unpriced_calls"] == 1
    assert supervisor["input_tokens"] == 10_000 + 100 + 1_000
    assert supervisor["cached_tokens"] == 4_000
    assert supervisor["output_tokens"] == 500 + 7 + 1_000
    assert Decimal(supervisor["saved_by_cache_usd"]) == Decimal("0.006")
    assert Decimal(supervisor["retry_overhead_usd"]) == 0
    # 0.036 / 0.06155 = 0.58489033...
    assert supervisor["share_pct"] == "58.4890"

    research = rows[("u-1", "research")]  # a4 + a5 + a6, inherited from a3
    assert Decimal(research["cost_usd"]) == Decimal("0.01755")
    assert research["calls"] == 3
    assert research["input_tokens"] == 3_000 + 1_000 + 1_000
    assert research["output_tokens"] == 300
    assert Decimal(research["retry_overhead_usd"]) == Decimal("0.002")  # the failed a5
    assert research["share_pct"] == "28.5134"  # 0.01755 / 0.06155

    support = rows[("u-2", "support")]
    assert Decimal(support["cost_usd"]) == Decimal("0.008")
    assert support["share_pct"] == "12.9976"  # 0.008 / 0.06155

    # Most expensive first; the total is exact and adds up.
    assert [row["agent"] for row in report["rows"]] == ["supervisor", "research", "support"]
    assert Decimal(report["total"]["cost_usd"]) == TOTAL
    assert report["total"]["calls"] == 7
    assert report["total"]["share_pct"] == "100.0000"
    assert report["unpriced_models"] == [
        {
            "model": "mystery-model",
            "provider": None,
            "spans": 1,
            "input_tokens": 100,
            "output_tokens": 7,
            "reason": "no price for mystery-model",
        }
    ]


def test_report_time_window_selects_spans_by_start(ledger: Path) -> None:
    late = run_json("report", "--group-by", "model", "--from", "2026-11-02T10:00:00Z",
                    "--db", ledger)  # fmt: skip
    assert [(row["model"], Decimal(row["cost_usd"])) for row in late["rows"]] == [
        ("model-b", Decimal("0.018"))  # only trace C
    ]
    assert late["from"] == "2026-11-02T10:00:00Z"
    early = run_json("report", "--group-by", "model", "--from", "2026-11-02",
                     "--to", "2026-11-02T10:00", "--db", ledger)  # fmt: skip
    costs = {row["model"]: Decimal(row["cost_usd"]) for row in early["rows"]}
    assert costs == {
        "model-a": Decimal("0.0228"),  # a2 + a5 + a6
        "model-b": Decimal("0.01275"),  # a4
        "house-llm": Decimal("0.008"),
        "mystery-model": Decimal(0),  # unpriced: listed with its calls, no cost
    }
    assert Decimal(early["total"]["cost_usd"]) == TOTAL - Decimal("0.018")


def test_report_csv_has_exact_money_and_every_group(ledger: Path) -> None:
    result = run("report", "--group-by", "provider", "--db", ledger, "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == [
        "provider", "cost_usd", "share_pct", "input_tokens", "cached_tokens", "output_tokens",
        "calls", "saved_by_cache_usd", "retry_overhead_usd", "unpriced_calls",
    ]  # fmt: skip
    costs = {row["provider"]: row["cost_usd"] for row in rows}
    # openai: a2 + a5 + a6; anthropic: a4 + c2; acme: b2; no provider: the unpriced a7.
    assert costs == {"openai": "0.0228", "anthropic": "0.03075", "acme": "0.008", "": "0"}
    assert sum(Decimal(value) for value in costs.values()) == TOTAL


def test_report_table_rounds_only_for_display(ledger: Path) -> None:
    result = run("report", "--group-by", "user,agent", "--db", ledger)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    research = next(line for line in lines if "research" in line)
    assert "$0.017550" in research and "28.5%" in research and "$0.002000" in research
    assert any("total" in line and "$0.061550" in line for line in lines)
    assert "unpriced mystery-model: 1 spans, 100 input + 7 output tokens" in result.stdout


def test_db_and_url_give_identical_answers(ledger: Path, server_url: str, tmp_path: Path) -> None:
    url = ("--url", server_url, "--token", TOKEN)
    for args in (
        ("report", "--group-by", "user,agent"),
        ("report", "--group-by", "model,provider,hour", "--from", "2026-11-02T09:10:00Z"),
        ("report", "--group-by", "department,price_status"),
        ("trace", TA),
        ("trace", TB),
    ):
        from_file = run_json(*args, "--db", ledger)
        from_server = run_json(*args, *url)
        assert from_file == from_server, args
    for grain in ("span", "hour"):
        files = []
        for name, source in (("db", ("--db", ledger)), ("url", url)):
            out = tmp_path / f"{grain}-{name}.csv"
            result = run("export", "focus", "--out", out, "--grain", grain, *source)
            assert result.returncode == 0, result.stderr
            files.append(out.read_text(encoding="utf-8"))
        assert files[0] == files[1], grain
        assert files[0].count("\n") > 1


# -- trace --------------------------------------------------------------------------------


def test_trace_tree_shows_spans_costs_flags_and_attribution(ledger: Path) -> None:
    result = run("trace", TA, "--db", ledger)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"trace {TA}" in text and "handle ticket" in text
    assert "$0.035550" in text  # the trace's cost in the title
    assert "retry overhead $0.002000" in text
    lines = {name: next(line for line in text.splitlines() if name in line)
             for name in ("invoke_agent research", "chat model-b", "chat mystery")}  # fmt: skip
    # invoke_agent research: own cost none, rollup a4 + a5 + a6; its agent is its own.
    assert "$0.017550" in lines["invoke_agent research"]
    assert "agent=research" in lines["invoke_agent research"]
    # a4 inherits user and department from the root and agent from its parent.
    assert "user=u-1" in lines["chat model-b"] and "department=eng" in lines["chat model-b"]
    assert "$0.012750" in lines["chat model-b"] and "write" in lines["chat model-b"]
    assert "unpriced" in lines["chat mystery"]
    retried = [line for line in text.splitlines() if "chat model-a" in line and "retry" in line]
    assert len(retried) == 1 and "$0.002000" in retried[0]
    assert sum("loop" in line for line in text.splitlines() if "execute_tool" in line) == 3
    # Children are indented under their parents, in start order.
    order = [line.strip().split("  ")[0] for line in text.splitlines() if "chat" in line]
    assert order == ["chat model-a", "chat model-b", "chat model-a", "chat model-a",
                     "chat mystery"]  # fmt: skip


def test_trace_json_keeps_stored_rollups_and_flags(ledger: Path) -> None:
    found = run_json("trace", TA.upper(), "--db", ledger)
    assert found["finalized"] is True
    assert Decimal(found["trace"]["cost"]) == Decimal("0.03555")
    assert Decimal(found["trace"]["retry_overhead"]) == Decimal("0.002")
    spans = {span["span_id"]: span for span in found["spans"]}
    assert len(spans) == 10  # a1..a10
    assert Decimal(spans[sid("a1")]["rollup"]) == Decimal("0.03555")
    assert Decimal(spans[sid("a3")]["rollup"]) == Decimal("0.01755")
    assert spans[sid("a5")]["retry"] is True and spans[sid("a6")]["retry"] is False
    assert all(spans[sid(f"a{n}")]["loop"] for n in (8, 9, 10))
    assert spans[sid("a7")]["price_status"] == "unpriced"
    assert (spans[sid("a4")]["user_id"], spans[sid("a4")]["agent"]) == ("u-1", "research")
    assert spans[sid("a2")]["attributes"]["gen_ai.usage.cache_read.input_tokens"] == 4_000


def test_trace_attribution_dims_inherited_values(ledger: Path) -> None:
    """In the terminal, a value a span set itself is bright and an inherited one dim."""
    from spanledger.reports.source import DuckDBSource
    from spanledger.reports.tree import stored_trace_table

    with DuckDBSource(ledger) as source:
        found = source.trace(TA)
    assert found is not None
    table = stored_trace_table(found["trace"], found["spans"])
    names = [str(cell).strip() for cell in table.columns[0].cells]
    attribution = list(table.columns[-1].cells)

    def styles(row_name: str) -> dict[str, str]:
        text = attribution[names.index(row_name)]
        return {text.plain[s.start : s.end].split("=")[0]: str(s.style) for s in text.spans}

    assert styles("handle ticket") == {"user": "cyan", "department": "cyan", "agent": "cyan"}
    assert styles("invoke_agent research") == {"user": "dim", "department": "dim",
                                               "agent": "cyan"}  # fmt: skip
    assert styles("chat model-b") == {"user": "dim", "department": "dim", "agent": "dim"}


# -- errors -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("report", "--db", "{missing}"), 1, "no ledger at"),
        (("report", "--group-by", "user,colour", "--db", "{ledger}"), 2,
         "cannot group by colour; choose from user"),
        (("report", "--from", "last tuesday", "--db", "{ledger}"), 2,
         "--from 'last tuesday' is not an ISO 8601 date"),
        (("report", "--from", "2026-11-03", "--to", "2026-11-02", "--db", "{ledger}"), 2,
         "is not before --to"),
        (("report", "--db", "{ledger}", "--url", "http://127.0.0.1:1"), 1,
         "either --db or --url"),
        (("report", "--json", "--csv", "--db", "{ledger}"), 2, "choose one of --json and --csv"),
        (("report", "--url", "http://127.0.0.1:{port}"), 1, "cannot reach http://127.0.0.1:"),
        (("trace", "not-a-trace", "--db", "{ledger}"), 2, "is not a trace id"),
        (("trace", "0" * 32, "--db", "{ledger}"), 1, f"no trace {'0' * 32} in"),
        (("export", "focus", "--out", "{tmp}/spend.xlsx", "--db", "{ledger}"), 2,
         "write FOCUS to a .csv or .parquet file"),
        (("export", "focus", "--out", "{tmp}/s.csv", "--grain", "day", "--db", "{ledger}"), 2,
         "choose span or hour"),
        (("export", "focus", "--out", "{tmp}/s.csv", "--to", "yesterday", "--db", "{ledger}"),
         2, "--to 'yesterday' is not an ISO 8601 date"),
        (("export", "focus", "--out", "{tmp}/s.csv", "--db", "{missing}"), 1, "no ledger at"),
    ],
)  # fmt: skip
def test_clear_errors(
    ledger: Path, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    values = {"ledger": ledger, "missing": tmp_path / "nope.duckdb", "tmp": tmp_path,
              "port": free_port()}  # fmt: skip
    result = run(*(arg.format(**values) for arg in args))
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / ".s.csv.partial").exists()


def test_url_without_the_token_is_told_to_give_one(server_url: str) -> None:
    for token in ((), ("--token", "wrong")):
        result = run("report", "--url", server_url, *token)
        assert result.returncode == 1
        assert "wants a bearer token: pass --token" in result.stderr


def test_a_ledger_held_by_a_running_server_points_to_url(tmp_path: Path) -> None:
    db = build_ledger(tmp_path / "busy.duckdb")
    sheet = tmp_path / "rates.yaml"
    sheet.write_text(SHEET, encoding="utf-8")
    with serving(db, sheet) as server:
        result = run("report", "--db", db)
        assert result.returncode == 1
        assert "open in another process" in result.stderr and "--url" in result.stderr
        through_server = run_json("report", "--url", server.http_url, "--token", TOKEN)
    assert Decimal(through_server["total"]["cost_usd"]) == TOTAL
