"""The dashboard in a real browser: Playwright driving Debian's chromium against a real
server filled by the demo workload (real OTel SDK, real openai/anthropic SDKs, the fake
provider), plus a few spans sent over OTLP/HTTP: twelve hours of history so the chart has
a shape, an in-house model that has no price, and a span with a hostile name.

Every number the page shows is checked against the JSON API of the same server; waits use
Playwright's `expect` (it polls until its timeout), never sleeps. Screenshots go to
tmp_path and, when SPANLEDGER_SCREENSHOTS names a directory, there too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright
from starlette.applications import Starlette

from spanledger.demo.provider import FakeProvider
from spanledger.server.config import ServeConfig
from spanledger.server.dashboard import dashboard_routes
from spanledger.server.run import Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
RATES = str(Path(__file__).resolve().parent.parent / "examples" / "rates.yaml")
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
HOSTILE_USER = '"><svg onload=alert(2)>'
HOSTILE_NOTE = "<script>alert(3)</script>"
UNPRICED_MODEL = "acme-internal-llm-v2"  # deliberately not in examples/rates.yaml
TOKEN = "s3cret-dashboard-token"
TIMEOUT_MS = 20_000

expect.set_options(timeout=TIMEOUT_MS)


# --- money as the page shows it ------------------------------------------------------------


def display_usd(text: str) -> str:
    """What app.js's formatUsd prints: 2 places from $1, 4 from 1¢, else 6; half up."""
    value = Decimal(text)
    magnitude = abs(value)
    places = 2 if magnitude >= 1 else 4 if magnitude >= Decimal("0.01") else 6
    rounded = magnitude.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    if magnitude == 0:
        return "$0.00"
    if rounded == 0:
        return f"{sign}<$0.{'0' * (places - 1)}1"
    return f"{sign}${rounded:,.{places}f}"


def test_display_usd_rule() -> None:
    assert display_usd("0.005839944") == "$0.005840"
    assert display_usd("0.075459876") == "$0.0755"
    assert display_usd("1234.5") == "$1,234.50"
    assert display_usd("0") == "$0.00"
    assert display_usd("-0.25") == "-$0.2500"
    assert display_usd("0.0000000001") == "<$0.000001"


# --- OTLP/JSON spans, sent as an instrumented service would ----------------------------------


def new_id(digits: int) -> str:
    return secrets.token_hex(digits // 2)


def otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"stringValue": str(value)}


@dataclass
class Span:
    trace_id: str
    name: str
    start_ns: int
    duration_ms: int = 200
    parent: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    span_id: str = field(default_factory=lambda: new_id(16))

    def otlp(self) -> dict[str, Any]:
        span = {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "name": self.name,
            "kind": 1,
            "startTimeUnixNano": str(self.start_ns),
            "endTimeUnixNano": str(self.start_ns + self.duration_ms * 1_000_000),
            "attributes": [{"key": k, "value": otlp_value(v)} for k, v in self.attributes.items()],
        }
        if self.parent:
            span["parentSpanId"] = self.parent
        return span


def chat(model: str, provider: str, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.provider.name": provider,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }


def send(url: str, spans: list[Span], service: str, token: str | None = None) -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": otlp_value(service)}]},
                "scopeSpans": [{"scope": {"name": "tests"}, "spans": [s.otlp() for s in spans]}],
            }
        ]
    }
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(f"{url}/v1/traces", json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text


def report_run(now_ns: int, hours_ago: float, number: int) -> list[Span]:
    """A nightly-report agent run: one priced call, and an in-house model with no price."""
    start = now_ns - int(hours_ago * 3600e9)
    trace = new_id(32)
    users = ("alice", "bob", "carol", "dave", "erin", "frank")
    root = Span(
        trace,
        "invoke_agent report-writer",
        start,
        duration_ms=900,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "report-writer",
            "user.id": users[number % len(users)],
            "spanledger.department": ("finance", "sales", "research")[number % 3],
        },
    )
    size = 3000 + (number * 7919) % 9000
    priced = Span(
        trace,
        "chat gpt-4.1-mini",
        start + 10_000_000,
        parent=root.span_id,
        attributes=chat("gpt-4.1-mini", "openai", size, 300 + number * 37 % 400),
    )
    in_house = Span(
        trace,
        f"chat {UNPRICED_MODEL}",
        start + 400_000_000,
        parent=root.span_id,
        attributes=chat(UNPRICED_MODEL, "acme", size // 2, 120),
    )
    return [root, priced, in_house]


# --- a filled server with the dashboard --------------------------------------------------------


def build_server(directory: Path, token: str | None = None) -> Server:
    config = ServeConfig.model_validate(
        {
            "db": str(directory / "ledger.duckdb"),
            "http": {"port": 0},
            "grpc": {"enabled": False},
            "rates": [RATES],
            "token": token,
            "finalize_after_seconds": 0.3,
        }
    )
    server = Server.build(config)
    if not any(getattr(route, "path", None) == "/" for route in server.app.routes):
        # Until create_app includes the dashboard itself: the same routes, in front.
        routes = dashboard_routes(server.pipeline, token=token)
        server.app = Starlette(routes=[*routes, *server.app.routes])
    return server.start()


@dataclass
class Ledger:
    url: str
    server: Server
    loop_trace: str
    token: str | None = None

    def api(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    server = build_server(tmp_path_factory.mktemp("dashboard"))
    provider = FakeProvider()
    try:
        provider.start()
        # In a process of its own: the instrumentations patch the openai/anthropic SDKs for
        # the whole process, and one of them cannot be undone.
        ran = subprocess.run(
            [sys.executable, "-m", "spanledger.demo.workload", server.http_url,
             provider.url or "", "--rates", str(RATES)],
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        results = json.loads(ran.stdout.strip().splitlines()[-1])
        now = time.time_ns()
        for number in range(12):
            # 67 minutes and more ago: outside "last hour", inside "last 24 hours".
            send(server.http_url, report_run(now, 1.12 + number, number), "nightly-reports")
        server.pipeline.flush(finalize=True)
        stopped = [result for result in results if result["stopped"]]
        assert stopped, "the demo workload has a runaway loop that its budget stops"
        yield Ledger(server.http_url, server, stopped[0]["trace_id"])
    finally:
        provider.stop()
        server.close()


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = "Debian's chromium is missing (/usr/bin/chromium): apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page, with the dialogs it opened and the script errors it raised."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    page = context.new_page()
    watched = Watched(page)

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    yield watched
    context.close()
    assert not watched.errors, f"script errors on the page: {watched.errors}"


def screenshot(page: Any, tmp_path: Path, name: str, *, full_page: bool = True) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 10_000, "the screenshot is blank"
    target = os.environ.get("SPANLEDGER_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / path.name)
    return path


def expect_money(locator: Any, exact: str) -> None:
    expect(locator).to_have_attribute("data-usd", exact)
    expect(locator).to_have_text(display_usd(exact))


def open_overview(page: Any, url: str, query: str = "") -> None:
    """Open the overview and wait until its first refresh has filled it."""
    page.goto(f"{url}/#/{query}")
    expect(page.locator("#status")).to_have_attribute("data-state", "live")


def breakdown(page: Any, name: str) -> dict[str, tuple[str | None, str]]:
    """key -> (exact data-usd, shown text) for each row of a breakdown card."""
    rows = page.locator(f"[data-breakdown={name}] tr[data-key]").evaluate_all(
        """rows => rows.map(row => {
            const money = row.querySelector('.money');
            return [row.dataset.key, money ? money.dataset.usd : null,
                    (money || row.querySelector('.amount')).textContent];
        })"""
    )
    return {key: (usd, text) for key, usd, text in rows}


# --- tests -------------------------------------------------------------------------------------


def test_overview_numbers_equal_the_api(ledger: Ledger, tab: Watched, tmp_path: Path) -> None:
    page = tab.page
    open_overview(page, ledger.url)
    total = ledger.api("/api/costs")["rows"][0]
    expect_money(page.get_by_test_id("total-spend").locator(".money"), total["cost"])
    expect_money(page.get_by_test_id("cache-saved"), total["saved_by_cache"])
    expect_money(
        page.get_by_test_id("retries").locator(".kpi-value .money"), total["retry_overhead"]
    )
    assert Decimal(total["saved_by_cache"]) > 0, "the demo's cached prompts save money"

    by_user = {
        row["user"]: row["cost"] for row in ledger.api("/api/costs", group_by="user")["rows"]
    }
    assert len(by_user) >= 6
    shown = breakdown(page, "user")
    assert {user: usd for user, (usd, _) in shown.items()} == by_user
    for user, (_, text) in shown.items():
        assert text == display_usd(by_user[user]), user

    by_model = ledger.api("/api/costs", group_by="model")["rows"]
    models = breakdown(page, "model")
    for row in by_model:
        usd, text = models[row["model"]]
        if row["model"] == UNPRICED_MODEL:
            assert usd is None and text == "unpriced", "an unpriced model is never shown as $0"
        else:
            assert (usd, text) == (row["cost"], display_usd(row["cost"]))

    unpriced = {row["model"]: row for row in ledger.api("/api/unpriced")["models"]}
    listed = page.get_by_test_id("unpriced").locator("tr", has_text=UNPRICED_MODEL)
    expect(listed).to_have_count(1)
    row = unpriced[UNPRICED_MODEL]
    expect(listed.locator("[data-col=input_tokens]")).to_have_text(f"{row['input_tokens']:,}")
    expect(listed.locator("[data-col=output_tokens]")).to_have_text(f"{row['output_tokens']:,}")
    expect(page.get_by_test_id("unpriced-calls").locator(".kpi-value")).to_have_text(
        str(sum(r["spans"] for r in unpriced.values()))
    )

    alerts = httpx.get(f"{ledger.url}/api/alerts", timeout=30)
    if alerts.status_code == 404:
        expect(page.get_by_test_id("alerts")).to_contain_text("Alerts not configured")
    else:  # the alerts endpoint exists: the panel shows what it says
        assert alerts.status_code == 200
        expect(page.get_by_test_id("alerts")).not_to_contain_text("Loading")
    expect(page.locator("#spend-chart canvas").first).to_be_visible()
    screenshot(page, tmp_path, "dashboard")


def test_most_expensive_trace_opens_its_tree(ledger: Ledger, tab: Watched, tmp_path: Path) -> None:
    page = tab.page
    open_overview(page, ledger.url)
    traces = ledger.api("/api/traces", limit=1000)["traces"]
    top = max(traces, key=lambda t: (Decimal(t["cost"]), t["start_time"]))
    first = page.get_by_test_id("top-traces").locator("tbody tr").first
    expect(first).to_have_attribute("data-trace", top["trace_id"])
    expect_money(first.locator(".money"), top["cost"])
    first.locator("a.trace-link").click()

    expect(page).to_have_url(f"{ledger.url}/#/trace/{top['trace_id']}")
    detail = ledger.api(f"/api/traces/{top['trace_id']}")
    expect(page.get_by_test_id("trace-title")).to_have_text(top["root_name"])
    expect_money(page.get_by_test_id("trace-cost").locator(".money"), top["cost"])
    rows = page.locator("[data-testid=span-tree] tr.span-row")
    expect(rows).to_have_count(len(detail["spans"]))
    shown = rows.evaluate_all(
        """rows => rows.map(row => [row.dataset.span,
            ...[...row.querySelectorAll('.cost-bar [data-usd]')].map(m => m.dataset.usd)])"""
    )
    spans = {span["span_id"]: span for span in detail["spans"]}
    for span_id, self_cost, rollup in shown:
        assert (self_cost, rollup) == (spans[span_id]["cost"], spans[span_id]["rollup"])
    # Inherited attribution: the LLM calls carry the root's user though only the root set it.
    user = top["user_id"]
    inherited = page.locator("tr.span-row .attr.inherited", has_text=user)
    assert user and inherited.count() >= 1
    # Cache status of the cached Claude call and its savings.
    cached = [s for s in detail["spans"] if s["cache_status"] in ("hit", "partial")]
    if cached:
        row = page.locator(f"tr[data-span='{cached[0]['span_id']}']")
        expect(row).to_contain_text(cached[0]["cache_status"])
    # A click on a row shows the span's own attributes, as text.
    page.locator("tr.span-row").nth(1).click()
    expect(page.locator("tr.details:not([hidden])")).to_contain_text("gen_ai.")
    # The root's twisty folds the whole tree under it, and unfolds it again.
    visible = page.locator("tr.span-row:not([hidden])")
    page.locator("tr.span-row").first.locator("button.twisty").click()
    expect(visible).to_have_count(1)
    expect(page.locator("tr.details:not([hidden])")).to_have_count(0)
    page.locator("tr.span-row").first.locator("button.twisty").click()
    expect(visible).to_have_count(len(detail["spans"]))
    expect(page.locator("#filters")).to_be_hidden()  # filters belong to the overview
    screenshot(page, tmp_path, "top-trace")


def test_runaway_loop_is_obvious(ledger: Ledger, tab: Watched, tmp_path: Path) -> None:
    page = tab.page
    open_overview(page, ledger.url)
    summary = ledger.api(f"/api/traces/{ledger.loop_trace}")["trace"]
    assert summary["loops"] >= 1
    row = page.get_by_test_id("top-traces").locator(f"tr[data-trace='{ledger.loop_trace}']")
    expect(row.locator(".badge-bad")).to_have_text(f"loop ×{summary['loops']}")
    row.locator("a.trace-link").click()

    banner = page.get_by_test_id("loop-banner")
    expect(banner).to_be_visible()
    expect_money(page.get_by_test_id("loop-cost"), summary["loop_cost"])
    spans = ledger.api(f"/api/traces/{ledger.loop_trace}")["spans"]
    looped = [s for s in spans if s["loop"]]
    fetches = sum(1 for s in looped if s["tool"] == "fetch_page")
    assert fetches > 10
    expect(banner).to_contain_text(f"fetch_page (tool) repeated {fetches}×")
    expect(banner).to_contain_text("runaway loop stopped")  # why the budget stopped it
    flagged = page.locator("tr.span-row.row-loop")
    expect(flagged).to_have_count(len(looped))
    expect(page.locator("tr.span-row [data-flag=loop]")).to_have_count(len(looped))
    red = flagged.first.evaluate("row => getComputedStyle(row).backgroundColor")
    r, g, b = (int(part) for part in red[red.index("(") + 1 : red.index(")")].split(",")[:3])
    assert r > 200 and g < 240 and b < 240 and r - g > 20, f"a loop row is red, not {red}"
    expect(page.get_by_test_id("trace-loops")).to_have_class("kpi kpi-bad")
    screenshot(page, tmp_path, "trace", full_page=False)


def test_retry_is_flagged(ledger: Ledger, tab: Watched) -> None:
    page = tab.page
    retried = [
        t
        for t in ledger.api("/api/traces", limit=1000)["traces"]
        if any(s["retry"] for s in ledger.api(f"/api/traces/{t['trace_id']}")["spans"])
    ]
    assert retried, "the demo retries a rate-limited call"
    trace = retried[0]
    page.goto(f"{ledger.url}/#/trace/{trace['trace_id']}")
    expect(page.get_by_test_id("retry-banner")).to_be_visible()
    expect(page.locator("tr.span-row.row-retry [data-flag=retry]")).to_have_count(1)
    expect_money(
        page.get_by_test_id("trace-retries").locator(".kpi-value .money"), trace["retry_overhead"]
    )


def send_hostile_trace(url: str) -> str:
    """One trace whose span name, user, attribute and service are markup."""
    trace, now = new_id(32), time.time_ns()
    root = Span(
        trace,
        HOSTILE_NAME,
        now,
        attributes={"user.id": HOSTILE_USER, "spanledger.department": "red-team"},
    )
    call = Span(
        trace,
        "chat gpt-4o-mini",
        now + 1_000_000,
        parent=root.span_id,
        attributes={**chat("gpt-4o-mini", "openai", 1200, 80), "note": HOSTILE_NOTE},
    )
    send(url, [root, call], HOSTILE_NOTE)
    return trace


def test_hostile_strings_render_as_text(ledger: Ledger, tab: Watched, tmp_path: Path) -> None:
    hostile = send_hostile_trace(ledger.url)
    ledger.server.pipeline.flush(finalize=True)
    page = tab.page
    page.goto(f"{ledger.url}/#/trace/{hostile}")
    expect(page.get_by_test_id("trace-title")).to_have_text(HOSTILE_NAME)
    expect(page.locator("tr.span-row .name").first).to_have_text(HOSTILE_NAME)
    expect(page.locator(".chip", has_text=HOSTILE_USER)).to_have_count(1)
    page.locator("tr.span-row").nth(1).click()
    expect(page.locator("tr.details:not([hidden])")).to_contain_text(HOSTILE_NOTE)
    open_overview(page, ledger.url, "?range=1h")
    expect(page.locator("[data-breakdown=user] tr", has_text=HOSTILE_USER)).to_have_count(1)
    expect(page.locator("[data-breakdown=service] tr", has_text=HOSTILE_NOTE)).to_have_count(1)
    expect(page.locator("#filter-user option", has_text=HOSTILE_USER)).to_have_count(1)
    # Filtering on the hostile value goes through the URL and back into the page as text.
    page.locator("[data-breakdown=user] a", has_text=HOSTILE_USER).click()
    expect(page.locator("#filter-user")).to_have_value(HOSTILE_USER)
    expect(page.get_by_test_id("top-traces").locator("a.trace-link")).to_have_text([HOSTILE_NAME])
    assert page.locator("img").count() == 0
    assert page.locator("svg").count() == 0
    assert page.locator("script").count() == 2  # the page's own: uPlot and app.js
    assert tab.dialogs == []
    screenshot(page, tmp_path, "hostile")


def test_filters_live_in_the_url(ledger: Ledger, tab: Watched) -> None:
    page = tab.page
    open_overview(page, ledger.url)
    page.locator("#filter-user").select_option("alice")
    expect(page).to_have_url(f"{ledger.url}/#/?user=alice")
    alice = ledger.api("/api/costs", user="alice")["rows"][0]
    expect_money(page.get_by_test_id("total-spend").locator(".money"), alice["cost"])
    expect(page.locator("[data-breakdown=user] tr[data-key]")).to_have_count(1)

    models = ledger.api("/api/costs", group_by="model,provider", user="alice")["rows"]
    claude = next(row["model"] for row in models if row["provider"] == "anthropic")
    page.locator("#filter-model").select_option(claude)
    expect(page).to_have_url(f"{ledger.url}/#/?user=alice&model={claude}")
    both = ledger.api("/api/costs", user="alice", model=claude)["rows"][0]
    expect_money(page.get_by_test_id("total-spend").locator(".money"), both["cost"])

    # A shared link opens the same view: provider and department, last hour.
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    providers = ledger.api(
        "/api/costs", group_by="provider", department="research", **{"from": since}
    )
    anthropic = next(r for r in providers["rows"] if r["provider"] == "anthropic")
    page.goto(f"{ledger.url}/#/?range=1h&provider=anthropic&department=research")
    expect(page.locator("#filter-provider")).to_have_value("anthropic")
    expect(page.locator("#filter-department")).to_have_value("research")
    expect(page.locator("#filter-range")).to_have_value("1h")
    expect_money(page.get_by_test_id("total-spend").locator(".money"), anthropic["cost"])

    # Time range: the last hour leaves out the history that started 67+ minutes ago.
    recent = ledger.api("/api/costs", **{"from": since})["rows"][0]
    everything = ledger.api("/api/costs")["rows"][0]
    assert Decimal(recent["cost"]) < Decimal(everything["cost"])
    page.goto(f"{ledger.url}/#/?range=1h")
    expect_money(page.get_by_test_id("total-spend").locator(".money"), recent["cost"])
    page.locator("#filter-range").select_option("all")
    expect(page).to_have_url(f"{ledger.url}/#/")
    expect_money(page.get_by_test_id("total-spend").locator(".money"), everything["cost"])

    # Dimensions without a select (tenant, conversation) still filter, and say so.
    page.goto(f"{ledger.url}/#/?tenant=nobody")
    expect(page.locator(".url-filter")).to_contain_text("nobody")
    nobody = ledger.api("/api/costs", tenant="nobody")["rows"][0]
    assert nobody["calls"] == 0  # the core API sums nothing to null; the page shows $0.00
    expect_money(page.get_by_test_id("total-spend").locator(".money"), "0")


def test_dashboard_api_agrees_with_the_core_api(ledger: Ledger) -> None:
    overview = ledger.api("/api/overview")
    core = ledger.api("/api/costs")["rows"][0]
    for name in ("cost", "saved_by_cache", "retry_overhead", "calls", "input_tokens"):
        assert overview["summary"][name] == core[name], name
    series = overview["series"]
    assert series["step"] == "hour" and len(series["points"]) >= 13
    assert sum(Decimal(p["cost"]) for p in series["points"]) == Decimal(core["cost"])
    for name in ("model", "user", "agent"):
        core_rows = ledger.api("/api/costs", group_by=name)["rows"]
        rows = overview["breakdown"][name]["rows"]
        assert [(r[name], r["cost"]) for r in rows] == [(r[name], r["cost"]) for r in core_rows]
    top = ledger.api("/api/top-traces", limit=3)["traces"]
    costs = [Decimal(t["cost"]) for t in top]
    assert costs == sorted(costs, reverse=True) and len(top) == 3
    loop = ledger.api(f"/api/traces/{ledger.loop_trace}")["trace"]
    assert Decimal(overview["summary"]["loop_cost"]) == Decimal(loop["loop_cost"])
    dims = ledger.api("/api/dimensions")
    assert {row["value"] for row in dims["user"]} >= {"alice", "bob", "carol", "dave"}
    assert UNPRICED_MODEL in {row["value"] for row in dims["model"]}
    bad = httpx.get(f"{ledger.url}/api/timeseries", params={"step": "week"}, timeout=30)
    assert bad.status_code == 400 and "step" in bad.json()["error"]


def test_token_auth_then_live_refresh(tmp_path: Path, tab: Watched) -> None:
    server = build_server(tmp_path, token=TOKEN)
    try:
        url, now = server.http_url, time.time_ns()
        send(url, report_run(now, 0.01, 1), "nightly-reports", token=TOKEN)
        server.pipeline.flush(finalize=True)
        ledger = Ledger(url, server, "", token=TOKEN)
        assert httpx.get(f"{url}/api/overview", timeout=30).status_code == 401
        page = tab.page
        page.goto(f"{url}/")
        form = page.get_by_test_id("token-form")
        expect(form).to_be_visible()
        expect(page.get_by_test_id("total-spend")).to_have_count(0)
        screenshot(page, tmp_path, "token")
        page.get_by_label("Access token").fill("wrong")
        page.get_by_role("button", name="Open dashboard").click()
        expect(form.get_by_role("alert")).to_contain_text("refused")
        page.get_by_label("Access token").fill(TOKEN)
        page.get_by_role("button", name="Open dashboard").click()
        total = ledger.api("/api/costs")["rows"][0]["cost"]
        expect_money(page.get_by_test_id("total-spend").locator(".money"), total)
        page.reload()  # the token stays for this tab's session
        expect_money(page.get_by_test_id("total-spend").locator(".money"), total)

        # Live: spans that arrive while the page is open show up without a reload.
        send(url, report_run(time.time_ns(), 0.0, 2), "nightly-reports", token=TOKEN)
        server.pipeline.flush(finalize=True)
        grown = ledger.api("/api/costs")["rows"][0]["cost"]
        assert Decimal(grown) > Decimal(total)
        expect_money(page.get_by_test_id("total-spend").locator(".money"), grown)

        page.get_by_role("button", name="Forget token").click()
        expect(page.get_by_test_id("token-form")).to_be_visible()
    finally:
        server.close()


def test_static_files_and_page_headers(ledger: Ledger) -> None:
    page = httpx.get(f"{ledger.url}/", timeout=30)
    assert page.status_code == 200 and "ui/app.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-eval" not in policy
    for asset in ("ui/app.js", "ui/app.css", "ui/vendor/uplot.min.js", "ui/vendor/uplot.LICENSE"):
        assert httpx.get(f"{ledger.url}/{asset}", timeout=30).status_code == 200, asset
    moved = httpx.get(f"{ledger.url}/trace/{ledger.loop_trace}", timeout=30)
    assert moved.status_code == 307 and moved.headers["location"].endswith(
        f"#/trace/{ledger.loop_trace}"
    )
