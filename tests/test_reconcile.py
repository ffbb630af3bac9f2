"""`spanledger reconcile`: a synthetic bill against a real ledger, every cause found exactly.

The ledger is a DuckDB file filled by the real ingest pipeline, priced only from the
ledger's sheet below. The bill (tests/data/bills/synthetic/, in the providers' own export
formats) is what the providers would bill for the same workload, with five deliberate
differences: a cache price the sheet gets wrong, failed attempts the provider billed that
telemetry has no usage for, a dropped exporter batch, a model the ledger has no price for,
and a negotiated price the sheet does not know; plus a charge that is not per token.

Rates, USD per million tokens ($1/M = 10^9 femto-dollars a token):

    model (provider)            ledger sheet                 invoice
    gpt-4o-mini (openai)        in 0.15, cached (=in) 0.15,  in 0.15, cached 0.075,
                                out 0.60                     out 0.60
    gpt-4o (openai)             in 2.5, out 10               in 2.25, out 9 (10% off)
    gpt-4.1-nano (openai)       (none: unpriced)             in 0.10, out 0.40
    claude-sonnet-4 (anthropic) in 3, write 3.75, out 15     the same
    house-llm (acme)            in 4, out 4                  (no bill for acme)

The workload (OTel GenAI usage: input tokens include cached and cache-written ones):

2026-11-02, OpenAI project proj_web (resource openai.project.id):
  s1  gpt-4o-mini  10,000 in (4,000 cached), 1,000 out
      ledger 6,000 x .15 + 4,000 x .15 + 1,000 x .6 = $0.0009 + $0.0006 + $0.0006 = $0.0021
      bill   6,000 x .15 + 4,000 x .075 + 1,000 x .6 = $0.0018
  s2  gpt-4o-mini  2,000 in, 500 out; its first HTTP attempt a1 timed out (no status) and
      the SDK retried it (a2). Ledger: $0.0003 + $0.0003 = $0.0006, once. The provider
      billed a1 too: 2,000 in, 500 out more.
  f0  gpt-4o-mini  failed with 429, no usage: refused, not billed
  f1  gpt-4o-mini  failed with a timeout, no usage; the provider billed it: 1,000 in, 200 out
  f2  gpt-4o-mini  the retry of f0 and f1: 1,000 in, 200 out = $0.00015 + $0.00012
2026-11-02, proj_tools:
  n1  gpt-4.1-nano 3,000 in, 300 out: unpriced in the ledger
2026-11-02, Anthropic workspace wrkspc_support:
  c1  claude-sonnet-4 3,000 in (1,000 cache writes), 200 out
      2,000 x 3 + 1,000 x 3.75 + 200 x 15 = $0.006 + $0.00375 + $0.003 = $0.01275
      and a dropped batch the ledger never got: 5,000 in, 1,000 out
2026-11-03, proj_web:
  o1  gpt-4o 20,000 in, 2,000 out = $0.05 + $0.02 = $0.07
  h1  house-llm (acme) 1,000 in, 1,000 out = $0.008: acme sends no bill, not compared

The bill, row by row (OpenAI usage and costs, Anthropic usage and cost report):

  gpt-4o-mini proj_web   in 6,000 + 2,000 x 2 + 1,000 x 2 = 12,000 x .15  = $0.0018
                         cached 4,000 x .075                            = $0.0003
                         out 1,000 + 500 x 2 + 200 x 2 = 2,400 x .6      = $0.00144
                         total $0.00354; ledger 9,000 in ($0.00135), 4,000 cached
                         ($0.0006), 1,700 out ($0.00102) = $0.00297; gap $0.00057 =
    cache_pricing    4,000 x (.075 - .15)                   = -$0.0003
    failed_attempts  (2,000 + 1,000) x .15 + (500 + 200) x .6 = $0.00045 + $0.00042 = $0.00087
  web search (proj_web)  $0.025 = non_token_charges
  gpt-4.1-nano proj_tools  3,000 x .1 + 300 x .4 = $0.0003 + $0.00012 = $0.00042 =
    unpriced_models $0.00042 (ledger $0)
  claude-sonnet-4 wrkspc_support  7,000 x 3 + 1,000 x 3.75 + 1,200 x 15
                         = $0.021 + $0.00375 + $0.018 = $0.04275; gap $0.03 =
    missing_telemetry 5,000 x 3 + 1,000 x 15 = $0.015 + $0.015 = $0.03
  2026-11-03 gpt-4o proj_web  20,000 x 2.25 + 2,000 x 9 = $0.045 + $0.018 = $0.063; gap
    rate_difference  20,000 x (2.25 - 2.5) + 2,000 x (9 - 10) = -$0.005 - $0.002 = -$0.007

Bill $0.00354 + $0.025 + $0.00042 + $0.04275 + $0.063 = $0.13471; ledger (acme not
compared) $0.00297 + $0 + $0.01275 + $0.07 = $0.08572; gap $0.04899 =
-$0.0003 + $0.00087 + $0.03 + $0.00042 - $0.007 + $0.025, remainder exactly $0.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spanledger.pricing import PriceBook, RateSheet
from spanledger.reports.bills import parse_bill, read_bill
from spanledger.reports.reconcile import model_key, reconcile, reconcile_json
from spanledger.server.config import GrpcListener, ServeConfig
from spanledger.server.pipeline import Pipeline
from spanledger.server.reconcile_api import reconcile_routes
from spanledger.server.run import Server
from spanledger.spans import STATUS_ERROR, SpanRecord
from spanledger.store.duckdb import DuckDBStore
from test_reports_cli import run

DATA = Path(__file__).parent / "data" / "bills"
SYNTHETIC = sorted((DATA / "synthetic").glob("*.json"))
SHEET = """\
version: ledger-sheet-2026
models:
  - match: gpt-4o-mini*        # no cache_read price: cached tokens at the input price
    provider: openai
    per_million: {input: 0.15, output: 0.60}
  - match: gpt-4o
    provider: openai
    per_million: {input: 2.5, cache_read: 1.25, output: 10}
  - match: claude-sonnet-4*
    provider: anthropic
    per_million: {input: 3, cache_read: 0.3, cache_write: 3.75, output: 15}
  - match: house-llm
    per_million: {input: 4, output: 4}
"""
TOKEN = "s3cret-reconcile"
DAY1 = 1_793_577_600 * 10**9  # 2026-11-02T00:00:00Z in ns
HOUR = 3600 * 10**9
SECOND = 10**9
WEB = {"service.name": "svc-web", "openai.project.id": "proj_web"}
TOOLS = {"service.name": "svc-tools", "openai.project.id": "proj_tools"}
SUPPORT = {"service.name": "svc-support", "anthropic.workspace.id": "wrkspc_support"}
MINI = "gpt-4o-mini-2024-07-18"
URL = "https://api.openai.com/v1/chat/completions"


def chat(request: str, provider: str, usage: tuple[int, int] | None = None, **extra: Any):
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": request,
        **extra,
    }
    if usage is not None:
        attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"] = usage
    return attrs


def hexid(name: str, width: int) -> str:
    """A readable id: 's1' -> '0000000000007331' (its letters in hex)."""
    return name.encode().hex().rjust(width, "0")


def rec(trace: str, span: str, parent: str, at: int, attrs: dict[str, Any], resource, **kw):
    return SpanRecord(
        trace_id=hexid(trace, 32),
        span_id=hexid(span, 16),
        parent_span_id=hexid(parent, 16) if parent else "",
        name=str(attrs.get("gen_ai.operation.name", "work")),
        start_ns=at,
        end_ns=at + SECOND // 2,
        attributes=attrs,
        resource=resource,
        **kw,
    )


def workload() -> list[SpanRecord]:
    t9 = DAY1 + 9 * HOUR
    attempt = {"http.request.method": "POST", "url.full": URL}
    return [
        rec("a1", "a0", "", t9, {"user.id": "u-1"}, WEB),
        rec("a1", "s1", "a0", t9 + SECOND,
            chat("gpt-4o-mini", "openai", (10_000, 1_000), **{
                "gen_ai.response.model": MINI, "gen_ai.usage.cache_read.input_tokens": 4_000}),
            WEB),
        rec("b1", "b0", "", t9 + 60 * SECOND, {"user.id": "u-2"}, WEB),
        rec("b1", "s2", "b0", t9 + 61 * SECOND,
            chat("gpt-4o-mini", "openai", (2_000, 500), **{"gen_ai.response.model": MINI}), WEB),
        rec("b1", "a1", "s2", t9 + 61 * SECOND,
            {**attempt, "spanledger.attempt": 1, "error.type": "ReadTimeout"}, WEB,
            kind=3, status_code=STATUS_ERROR),
        rec("b1", "a2", "s2", t9 + 62 * SECOND,
            {**attempt, "spanledger.attempt": 2, "http.response.status_code": 200}, WEB, kind=3),
        rec("b1", "f0", "b0", t9 + 70 * SECOND,
            chat("gpt-4o-mini", "openai", **{"error.type": "429"}), WEB,
            status_code=STATUS_ERROR),
        rec("b1", "f1", "b0", t9 + 71 * SECOND,
            chat("gpt-4o-mini", "openai", **{"error.type": "APITimeoutError"}), WEB,
            status_code=STATUS_ERROR),
        rec("b1", "f2", "b0", t9 + 80 * SECOND,
            chat("gpt-4o-mini", "openai", (1_000, 200), **{"gen_ai.response.model": MINI}), WEB),
        rec("c1", "n1", "", t9 + 120 * SECOND,
            chat("gpt-4.1-nano-2025-04-14", "openai", (3_000, 300)), TOOLS),
        rec("d1", "c1", "", t9 + 180 * SECOND,
            chat("claude-sonnet-4-20250514", "anthropic", (3_000, 200), **{
                "gen_ai.usage.cache_creation.input_tokens": 1_000}), SUPPORT),
        rec("e1", "o1", "", DAY1 + 33 * HOUR,
            chat("gpt-4o", "openai", (20_000, 2_000), **{
                "gen_ai.response.model": "gpt-4o-2024-08-06"}), WEB),
        rec("e2", "h1", "", DAY1 + 34 * HOUR,
            chat("house-llm", "acme", (1_000, 1_000)), {"service.name": "svc-lab"}),
    ]  # fmt: skip


def build_ledger(path: Path) -> Path:
    store = DuckDBStore(path)
    book = PriceBook([RateSheet.parse(SHEET, name="ledger-sheet")], use_defaults=False)
    pipeline = Pipeline(store, book, finalize_after=3600)
    pipeline.start()
    try:
        spans = workload()
        assert pipeline.submit(spans).result(30) == len(spans)
        pipeline.flush(finalize=True)
    finally:
        pipeline.stop()
        store.close()
    return path


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ledger(tmp_path_factory.mktemp("reconcile") / "ledger.duckdb")


def usd(value: str) -> Decimal:
    return Decimal(value)


def by_model(data: dict[str, Any]) -> dict[tuple[str, str | None], dict[str, Any]]:
    return {(row["day"], row["model"]): row for row in data["rows"]}


def reconcile_cli(ledger: Path, *args: str | Path) -> dict[str, Any]:
    bills = [arg for path in SYNTHETIC for arg in ("--bill", path)]
    result = run("reconcile", *bills, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- the synthetic bill -------------------------------------------------------------------


@pytest.fixture(scope="module")
def answer(ledger: Path) -> dict[str, Any]:
    return reconcile_cli(ledger, "--db", ledger)


def test_every_cause_is_found_with_its_amount(answer: dict[str, Any]) -> None:
    total = answer["total"]
    assert usd(total["bill_usd"]) == Decimal("0.13471")
    assert usd(total["ledger_usd"]) == Decimal("0.08572")
    assert usd(total["gap_usd"]) == Decimal("0.04899")
    assert {name: usd(value) for name, value in total["causes"].items()} == {
        "cache_pricing": Decimal("-0.0003"),
        "failed_attempts": Decimal("0.00087"),
        "missing_telemetry": Decimal("0.03"),
        "unpriced_models": Decimal("0.00042"),
        "rate_difference": Decimal("-0.007"),
        "non_token_charges": Decimal("0.025"),
    }
    assert total["remainder_usd"] == "0"
    assert not total["bill_estimated"]
    assert answer["bad_rows"] == [] and answer["warnings"] == []
    assert [cause["cause"] for cause in answer["causes"]][-1] == "remainder"


def test_each_row_holds_its_own_cause(answer: dict[str, Any]) -> None:
    rows = by_model(answer)
    assert set(rows) == {
        ("2026-11-02", "gpt-4o-mini"),
        ("2026-11-02", "gpt-4.1-nano"),
        ("2026-11-02", "claude-sonnet-4-0"),
        ("2026-11-02", None),  # the web search charge: not per token, not per model
        ("2026-11-03", "gpt-4o"),
    }
    for row in rows.values():
        assert row["remainder_usd"] == "0", row
        named = {name: usd(v) for name, v in row["causes"].items() if usd(v)}
        assert sum(named.values()) == usd(row["gap_usd"])

    mini = rows[("2026-11-02", "gpt-4o-mini")]
    assert (mini["provider"], mini["project"]) == ("openai", "proj_web")
    assert mini["bill_models"] == [MINI] and mini["ledger_models"] == ["gpt-4o-mini", MINI]
    assert mini["bill"]["tokens"] == {
        "input": 12_000, "cache_read": 4_000, "cache_write": 0, "output": 2_400,
    }  # fmt: skip
    assert mini["bill"]["requests"] == 5  # s1, s2 twice, f1, f2 (the 429 was not billed)
    assert mini["ledger"]["tokens"] == {
        "input": 9_000, "cache_read": 4_000, "cache_write": 0, "output": 1_700,
    }  # fmt: skip
    assert (mini["ledger"]["calls"], mini["ledger"]["failed_calls"]) == (5, 2)
    assert mini["ledger"]["retry_candidates"] == 2  # a1 (via s2) and f1 (via f2), not f0
    assert (usd(mini["bill"]["usd"]), usd(mini["ledger"]["usd"])) == (
        Decimal("0.00354"),
        Decimal("0.00297"),
    )
    assert usd(mini["causes"]["cache_pricing"]) == Decimal("-0.0003")  # 4,000 x -0.075/M
    assert usd(mini["causes"]["failed_attempts"]) == Decimal("0.00087")
    assert mini["cause_tokens"]["failed_attempts"] == {
        "input": 3_000, "cache_read": 0, "cache_write": 0, "output": 700,
    }  # fmt: skip

    nano = rows[("2026-11-02", "gpt-4.1-nano")]
    assert nano["project"] == "proj_tools" and nano["ledger"]["unpriced_calls"] == 1
    assert usd(nano["causes"]["unpriced_models"]) == Decimal("0.00042") == usd(nano["gap_usd"])

    claude = rows[("2026-11-02", "claude-sonnet-4-0")]
    assert (claude["provider"], claude["project"]) == ("anthropic", "wrkspc_support")
    assert usd(claude["causes"]["missing_telemetry"]) == Decimal("0.03")
    assert claude["cause_tokens"]["missing_telemetry"] == {
        "input": 5_000, "cache_read": 0, "cache_write": 0, "output": 1_000,
    }  # fmt: skip

    web = rows[("2026-11-02", None)]
    assert usd(web["causes"]["non_token_charges"]) == Decimal("0.025") == usd(web["gap_usd"])

    gpt4o = rows[("2026-11-03", "gpt-4o")]
    assert usd(gpt4o["causes"]["rate_difference"]) == Decimal("-0.007")
    assert usd(gpt4o["gap_usd"]) == Decimal("-0.007")


def test_a_provider_without_a_bill_is_listed_not_compared(answer: dict[str, Any]) -> None:
    assert answer["not_compared"] == [{"provider": "acme", "calls": 1, "ledger_usd": "0.008"}]
    assert answer["from"] == "2026-11-02" and answer["to"] == "2026-11-04"
    formats = {Path(bill["file"]).name: bill["format"] for bill in answer["bills"]}
    assert formats == {
        "anthropic_cost_report.json": "anthropic-costs",
        "anthropic_usage_report_messages.json": "anthropic-usage",
        "openai_costs.json": "openai-costs",
        "openai_usage_completions.json": "openai-usage",
    }


def test_the_table_shows_each_cause_and_the_remainder(ledger: Path) -> None:
    bills = [arg for path in SYNTHETIC for arg in ("--bill", path)]
    result = run("reconcile", *bills, "--db", ledger)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for label in (
        "cache discounts priced differently", "retries and failed attempts",
        "calls missing from telemetry", "models without a price", "rate sheet vs invoice",
        "charges not per token", "unexplained",
    ):  # fmt: skip
        assert label in text
    assert "$0.048990" in text  # the gap
    assert "cache $-0.000300" in text and "missing $0.030000" in text
    assert "not compared: acme" in text


def test_a_window_narrows_bill_and_ledger(ledger: Path) -> None:
    data = reconcile_cli(ledger, "--db", ledger, "--from", "2026-11-03", "--to", "2026-11-04")
    assert [(row["day"], row["model"]) for row in data["rows"]] == [("2026-11-03", "gpt-4o")]
    assert usd(data["total"]["gap_usd"]) == Decimal("-0.007")
    assert any("bill rows fall outside" in warning for warning in data["warnings"])
    bad = run("reconcile", "--bill", SYNTHETIC[0], "--db", ledger, "--from", "2026-11-02T09:00")
    assert bad.returncode == 2 and "bills are daily" in bad.stderr


def test_the_same_answer_through_a_running_server(ledger: Path, tmp_path: Path) -> None:
    copy = shutil.copy(ledger, tmp_path / "served.duckdb")
    grpc = {"enabled": False} if "enabled" in GrpcListener.model_fields else {"port": 0}
    config = ServeConfig.model_validate(
        {"db": str(copy), "http": {"port": 0}, "grpc": grpc, "token": TOKEN,
         "use_default_prices": False}
    )  # fmt: skip
    server = Server.build(config)
    server.app.router.routes.extend(reconcile_routes(server.pipeline, token=TOKEN))
    server.start()
    try:
        direct = reconcile_cli(ledger, "--db", ledger)
        served = reconcile_cli(ledger, "--url", server.http_url, "--token", TOKEN)
        import httpx

        body = {"bills": [{"name": path.name, "content": path.read_text()} for path in SYNTHETIC]}
        posted = httpx.post(
            f"{server.http_url}/api/reconcile", json=body,
            headers={"authorization": f"Bearer {TOKEN}"}, timeout=30,
        )  # fmt: skip
        refused = httpx.post(f"{server.http_url}/api/reconcile", json=body, timeout=30)
        daily = httpx.get(
            f"{server.http_url}/api/ledger/daily",
            params={"from": "2026-11-02T00:00:00Z", "to": "2026-11-03T00:00:00Z"},
            headers={"authorization": f"Bearer {TOKEN}"}, timeout=30,
        )  # fmt: skip
    finally:
        server.close()
    for key in ("ledger",):
        direct.pop(key), served.pop(key)
    assert served == direct
    assert posted.status_code == 200, posted.text
    assert posted.json()["total"] == direct["total"]
    assert refused.status_code == 401
    assert daily.status_code == 200
    estimates = [row for row in daily.json()["rows"] if row["class"] == "retry_estimate"]
    assert estimates == [
        {
            "day": "2026-11-02", "provider": "openai", "model": MINI, "project": "proj_web",
            "api_key": None, "class": "retry_estimate", "failed": True, "calls": 2,
            "input_uncached": 3_000, "cache_read": 0, "cache_write": 0, "output": 700,
            "cost_input": "0", "cost_cache_read": "0", "cost_cache_write": "0",
            "cost_output": "0", "cost": "0",
        }
    ]  # fmt: skip


def test_bad_rows_stop_the_comparison_unless_allowed(ledger: Path) -> None:
    bad = DATA / "openai_usage_bad_rows.json"
    result = run("reconcile", "--bill", bad, "--db", ledger)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"bad row {bad}:21: output_tokens -3 is negative" in lines
    assert any(line.startswith(f"bad row {bad}:41: bucket start_time") for line in lines)
    assert "--allow-bad-rows" in result.stderr

    result = run("reconcile", "--bill", bad, "--db", ledger, "--allow-bad-rows", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(row["line"], row["reason"][:20]) for row in data["bad_rows"]] == [
        (21, "output_tokens -3 is "),
        (30, "input_cached_tokens "),
        (41, "bucket start_time 'y"),
    ]
    assert any("has_more is true" in warning for warning in data["warnings"])

    table = run("reconcile", "--bill", bad, "--db", ledger, "--allow-bad-rows")
    assert f"bad row {bad}:21" in table.stdout

    unknown = run("reconcile", "--bill", DATA / "synthetic", "--db", ledger)
    assert unknown.returncode == 2 and "cannot read" in unknown.stderr


# -- the explanation, cause by cause, on hand-made rows -----------------------------------


def ledger_row(
    model: str,
    cls: str = "priced",
    *,
    provider: str = "openai",
    failed=False,
    calls=1,
    tokens=(0, 0, 0, 0),
    costs=(0, 0, 0, 0),
    day="2026-11-02",
    **kw,
):
    row = {
        "day": day, "provider": provider, "model": model, "project": None, "api_key": None,
        "class": cls, "failed": failed, "calls": calls,
        **dict(zip(("input_uncached", "cache_read", "cache_write", "output"), tokens, strict=True)),
        **dict(zip(("cost_input", "cost_cache_read", "cost_cache_write", "cost_output"), costs,
                   strict=True)),
        "cost": sum(costs),
    }  # fmt: skip
    row.update(kw)
    return row


M = 10**9  # femto-dollars per token at $1 per million tokens
GENERIC_HEAD = (
    "date,provider,model,input_tokens,cached_tokens,cache_write_tokens,output_tokens,cost_usd\n"
)


def explain(bill_text: str, rows: list[dict[str, Any]], name: str = "bill.csv") -> dict[str, Any]:
    bill = parse_bill(bill_text, name)
    assert not bill.bad_rows, bill.bad_rows
    day = dt.date(2026, 11, 2)
    return reconcile_json(reconcile([bill], rows, day, day + dt.timedelta(days=1)))


def test_cache_reads_the_ledger_priced_as_input() -> None:
    # The instrumentation reported no cache reads: the ledger priced 10,000 prompt tokens
    # at $2/M ($0.02) and 1,000 output at $8/M ($0.008). OpenAI's usage counts 4,000 of the
    # prompt as cached, and its cost report prices them at $0.5/M: $0.012 + $0.002 + $0.008
    # = $0.022. Gap -$0.006 = 4,000 x ($0.5 - $2)/M, all cache pricing.
    bucket = '"object": "bucket", "start_time": 1793577600, "end_time": 1793664000'
    usage = (
        f'{{"object": "page", "data": [{{{bucket}, "results": [{{'
        '"object": "organization.usage.completions.result", "input_tokens": 10000, '
        f'"input_cached_tokens": 4000, "output_tokens": 1000, "model": "{MINI}"}}]}}]}}'
    )
    items = ", ".join(
        f'{{"object": "organization.costs.result", "line_item": "{MINI}, {item}", '
        f'"amount": {{"value": {value}, "currency": "usd"}}}}'
        for item, value in (("input", "0.012"), ("cached input", "0.002"), ("output", "0.008"))
    )
    costs = f'{{"object": "page", "data": [{{{bucket}, "results": [{items}]}}]}}'
    bills = [parse_bill(usage, "usage.json"), parse_bill(costs, "costs.json")]
    rows = [ledger_row("gpt-4o-mini", tokens=(10_000, 0, 0, 1_000),
                       costs=(2 * M * 10_000, 0, 0, 8 * M * 1_000))]  # fmt: skip
    day = dt.date(2026, 11, 2)
    data = reconcile_json(reconcile(bills, rows, day, day + dt.timedelta(days=1)))
    (row,) = data["rows"]
    assert usd(row["bill"]["usd"]) == Decimal("0.022")
    assert usd(row["gap_usd"]) == Decimal("-0.006")
    assert usd(row["causes"]["cache_pricing"]) == Decimal("-0.006")
    assert row["cause_tokens"]["cache_pricing"]["cache_read"] == 4_000
    assert row["remainder_usd"] == "0"


def test_one_amount_per_row_scales_the_ledger_prices() -> None:
    # Generic CSV: 12,000 in + 1,000 out for $0.0252 where the ledger's $2/M in and $8/M
    # out make 12,000 x 2 + 1,000 x 8 = $0.032 for them: the bill's prices are the ledger's
    # x 0.7875. The ledger has 10,000 in and 1,000 out ($0.028). Missing: 2,000 in at
    # $2/M x 0.7875 = $0.00315; rate difference: (10,000 x 2 + 1,000 x 8) x (0.7875 - 1)
    # = -$0.00595; gap $0.0252 - $0.028 = -$0.0028 = $0.00315 - $0.00595.
    text = GENERIC_HEAD + "2026-11-02,openai,gpt-4o-mini,12000,0,0,1000,0.0252\n"
    rows = [
        ledger_row(
            "gpt-4o-mini", tokens=(10_000, 0, 0, 1_000), costs=(20 * M * 1000, 0, 0, 8 * M * 1000)
        )
    ]
    (row,) = explain(text, rows)["rows"]
    assert usd(row["gap_usd"]) == Decimal("-0.0028")
    assert usd(row["causes"]["missing_telemetry"]) == Decimal("0.00315")
    assert usd(row["causes"]["rate_difference"]) == Decimal("-0.00595")
    assert row["remainder_usd"] == "0"
    assert "scaled" in " ".join(row["notes"])


def test_failed_calls_the_provider_did_not_bill() -> None:
    # The ledger priced a failed call's 1,000 input tokens ($0.002 at $2/M); the bill has
    # only the successful call's 1,000 in + 100 out ($0.002 + $0.0008).
    text = GENERIC_HEAD + "2026-11-02,openai,gpt-4o-mini,1000,0,0,100,0.0028\n"
    rows = [
        ledger_row(
            "gpt-4o-mini", tokens=(1_000, 0, 0, 100), costs=(2 * M * 1000, 0, 0, 8 * M * 100)
        ),
        ledger_row(
            "gpt-4o-mini", failed=True, tokens=(1_000, 0, 0, 0), costs=(2 * M * 1000, 0, 0, 0)
        ),
    ]
    (row,) = explain(text, rows)["rows"]
    assert usd(row["gap_usd"]) == Decimal("-0.002")
    assert usd(row["causes"]["failed_attempts"]) == Decimal("-0.002")
    assert row["ledger"]["failed_calls"] == 1 and usd(row["ledger"]["failed_usd"]) == Decimal(
        "0.002"
    )
    assert row["remainder_usd"] == "0"


def test_a_usage_export_alone_is_valued_at_the_ledger_prices() -> None:
    text = (DATA / "synthetic" / "anthropic_usage_report_messages.json").read_text()
    rows = [ledger_row("claude-sonnet-4-20250514", provider="anthropic",
                       tokens=(2_000, 0, 1_000, 200),
                       costs=(6 * M * 1000, 0, 3_750 * M, 3 * M * 1000))]  # fmt: skip
    data = explain(text, rows, "usage.json")
    (row,) = data["rows"]
    # 5,000 in + 1,000 out missing, at the ledger's $3/M and $15/M: $0.03
    assert row["bill"]["estimated"] and data["total"]["bill_estimated"]
    assert usd(row["causes"]["missing_telemetry"]) == Decimal("0.03")
    assert row["remainder_usd"] == "0"


def test_what_the_causes_cannot_explain_is_the_remainder() -> None:
    # The ledger has a call on a day the bill does not: nothing explains it.
    text = GENERIC_HEAD + "2026-11-02,openai,gpt-4o-mini,1000,0,0,0,0.002\n"
    rows = [ledger_row("gpt-4o-mini", tokens=(1_000, 0, 0, 0), costs=(2 * M * 1000, 0, 0, 0)),
            ledger_row("gpt-4o", tokens=(500, 0, 0, 0), costs=(5 * M * 500, 0, 0, 0))]  # fmt: skip
    data = explain(text, rows)
    assert usd(data["total"]["remainder_usd"]) == Decimal("-0.0025")
    (extra,) = [row for row in data["rows"] if row["model"] == "gpt-4o"]
    assert "the ledger has tokens the bill does not: 500 input" in extra["notes"]


def test_models_meet_across_snapshot_names() -> None:
    assert model_key("openai", "gpt-4o-mini-2024-07-18") == model_key("openai", "gpt-4o-mini")
    assert model_key("anthropic", "claude-sonnet-4-20250514") == model_key(
        "anthropic", "claude-sonnet-4"
    )
    assert (
        model_key("acme", "house-llm-2026-01-02") == model_key("acme", "House-LLM") == "house-llm"
    )
    assert model_key("acme", "house-llm-20260102") == "house-llm"
    assert model_key("openai", None) is None


def test_the_synthetic_bill_files_read_cleanly() -> None:
    for path in SYNTHETIC:
        bill = read_bill(path)
        assert not bill.bad_rows and not bill.warnings, path


# -- the bill formats, bad rows with their lines ------------------------------------------


def problems(path: Path) -> list[tuple[int, str]]:
    return [(bad.line, bad.reason) for bad in read_bill(path).bad_rows]


def test_openai_completions_usage() -> None:
    path = DATA / "openai_usage_bad_rows.json"
    bill = read_bill(path)
    assert bill.format == "openai-usage"
    (line,) = bill.lines
    assert (line.line, line.day, line.provider, line.model) == (
        9, dt.date(2026, 11, 2), "openai", MINI,
    )  # fmt: skip
    # input_tokens includes the cached ones: 1,000 - 800 uncached
    assert (line.tokens.input, line.tokens.cache_read, line.tokens.output) == (200, 800, 500)
    assert (line.project, line.api_key, line.requests) == ("proj_abc", "key_abc", 5)
    assert problems(path) == [
        (21, "output_tokens -3 is negative"),
        (30, "input_cached_tokens 200 > input_tokens 100, which includes them"),
        (41, "bucket start_time 'yesterday' is not Unix seconds (its row not read)"),
    ]
    assert bill.warnings == [
        f"{path}: has_more is true: the report continues on a page this file lacks "
        "(next_page 'page_AAAAAGdGxdEiJdKOAAAAAGcqsYA='); fetch every page"
    ]


def test_openai_costs() -> None:
    path = DATA / "openai_costs_bad_rows.json"
    bill = read_bill(path)
    assert bill.format == "openai-costs"
    assert [(ln.line, ln.model, ln.cost_kind, ln.cost) for ln in bill.lines] == [
        (9, MINI, "input", 100_000_000_000_000),  # $0.1, exactly (never a float)
        (15, MINI, "cache_read", 200_000_000_000_000),
        (33, None, "other", 10_000_000_000_000),  # "Vector storage": not per token
    ]
    assert problems(path) == [
        (21, "currency 'eur': only USD bills are read"),
        (27, "amount.value 'lots' is not an amount"),
    ]


def test_anthropic_usage_report() -> None:
    path = DATA / "anthropic_usage_bad_rows.json"
    bill = read_bill(path)
    assert bill.format == "anthropic-usage"
    (line,) = bill.lines
    # uncached 1,500; cache reads 200; cache writes 500 (5m) + 1,000 (1h); output 500
    assert line.tokens is not None and line.tokens.as_dict() == {
        "input": 1_500, "cache_read": 200, "cache_write": 1_500, "output": 500,
    }  # fmt: skip
    assert (line.project, line.api_key) == (
        "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ", "apikey_01Rj2N8SVvo6BePZj99NhmiT",
    )  # fmt: skip
    assert problems(path) == [
        (22, "uncached_input_tokens '12' is not a token count"),
        (28, "cache_creation is not an object"),
        (36, "bucket starting_at 'the second of November' is not an RFC 3339 time"),
    ]


def test_anthropic_cost_report_amounts_are_cents() -> None:
    path = DATA / "anthropic_cost_report_bad_rows.json"
    bill = read_bill(path)
    assert bill.format == "anthropic-costs"
    assert [(ln.line, ln.cost_kind, ln.cost) for ln in bill.lines] == [
        (7, "input", 1_237_891_200_000_000),  # "123.78912" cents = $1.2378912
        (34, "other", 500_000_000_000_000),  # web search, "50" cents
    ]
    assert problems(path) == [
        (18, "amount (cents) '1,5' is not an amount"),
        (26, "token_type 'thinking_tokens' is not one SpanLedger knows"),
    ]


def test_anthropic_console_csv_exports() -> None:
    usage = DATA / "anthropic_console_usage.csv"
    bill = read_bill(usage)
    assert bill.format == "anthropic-console-usage"
    read = [(ln.line, ln.model, ln.tokens.as_dict() if ln.tokens else None) for ln in bill.lines]
    assert read[:2] == [
        (2, "claude-sonnet-4-20250514",
         {"input": 7_000, "cache_read": 0, "cache_write": 1_000, "output": 1_200}),
        (3, "claude-haiku-4-5-20251001",
         {"input": 1_200, "cache_read": 300, "cache_write": 0, "output": 80}),
    ]  # fmt: skip
    assert bill.lines[-1].line == 8  # after a blank line
    assert problems(usage) == [
        (4, "usage_date_utc 'November 3' is not a date (YYYY-MM-DD)"),
        (5, "usage_input_tokens_no_cache 'ten' is not a token count"),
        (6, "5 fields where the header has 14"),
    ]
    costs = DATA / "anthropic_console_cost.csv"
    bill = read_bill(costs)
    assert bill.format == "anthropic-console-costs"
    assert [(ln.line, ln.model, ln.cost_kind, ln.api_key) for ln in bill.lines] == [
        (2, "claude-sonnet-4", "input", "apikey_01AAA"),  # "Claude Sonnet 4", a display name
        (3, "claude-sonnet-4", "cache_write", "apikey_01AAA"),
        (4, "claude-sonnet-4", "output", "apikey_01AAA"),
        (6, None, "other", "apikey_01AAA"),
    ]
    assert model_key("anthropic", bill.lines[0].model) == model_key(
        "anthropic", "claude-sonnet-4-20250514"
    )
    assert problems(costs) == [(5, "cost_usd 'free' is not an amount")]


def test_generic_csv() -> None:
    path = DATA / "generic.csv"
    bill = read_bill(path)
    assert bill.format == "generic-csv"
    assert [(ln.line, ln.provider, ln.project, ln.cost) for ln in bill.lines] == [
        (2, "openai", "proj_web", 3_540_000_000_000),
        (3, "anthropic", "wrkspc_support", 42_750_000_000_000),  # "Anthropic" normalized
        (9, "openai", "proj_web", None),  # no amount: an empty cost_usd
    ]
    assert bill.lines[1].tokens == bill.lines[1].tokens.__class__(7_000, 0, 1_000, 1_200)
    assert problems(path) == [
        (4, "cached_tokens 200 > input_tokens 100, which includes them"),
        (5, "provider is empty"),
        (6, "cost_usd '0.06\\n3' is not an amount"),  # a quoted field over two lines
        (8, "cost_usd '$0.063' is not an amount"),
    ]


def test_what_is_not_a_bill_is_refused_with_its_line() -> None:
    from spanledger.reports.bills import BillError

    with pytest.raises(BillError, match=r"x.json:3: not valid JSON"):
        parse_bill('{"data": [\n  {"start_time": 1},\n  oops\n]}', "x.json")
    with pytest.raises(BillError, match=r"x.csv:1: not a bill .*columns when, what"):
        parse_bill("when,what\n1,2\n", "x.csv")
    with pytest.raises(BillError, match=r"organization.usage.embeddings.result is not read"):
        parse_bill(
            '{"object": "page", "data": [{"start_time": 0, "results": '
            '[{"object": "organization.usage.embeddings.result", "input_tokens": 1}]}]}',
            "e.json",
        )
    with pytest.raises(BillError, match="empty file"):
        parse_bill("  \n", "empty.csv")


def test_days_a_bill_does_not_cover_are_not_compared() -> None:
    # The Anthropic report has a bucket for 2026-11-02 only: a call on 2026-11-03 is
    # neither billed nor unbilled as far as this file knows.
    text = (DATA / "synthetic" / "anthropic_usage_report_messages.json").read_text()
    bill = parse_bill(text, "usage.json")
    rows = [
        ledger_row("claude-sonnet-4-20250514", provider="anthropic", day="2026-11-03",
                   tokens=(10, 0, 0, 1), costs=(30 * M, 0, 0, 15 * M)),
    ]  # fmt: skip
    day = dt.date(2026, 11, 2)
    data = reconcile_json(reconcile([bill], rows, day, day + dt.timedelta(days=2)))
    assert [row["day"] for row in data["rows"]] == ["2026-11-02"]
    assert data["not_compared"] == [
        {"provider": "anthropic on days no bill covers", "calls": 1, "ledger_usd": "0.000045"}
    ]
