"""`spanledger reprice`: the stored spend under other rate sheets, and `--apply`.

The ledger is `test_reports_cli`'s (real pipeline, hand-derived costs there), priced with
its sheet: model-a (openai) $2 in / $0.5 cached / $8 out per million tokens, model-b
(anthropic) $3 / $0.3 / $3.75 cache write / $15, house-llm $4 / $4, mystery-model no price.

    span  agent       model          usage                                   stored cost
    a2    supervisor  model-a        10,000 in (4,000 cached), 500 out       $0.018
    a4    research    model-b        3,000 in (1,000 cache writes), 200 out  $0.01275
    a5    research    model-a        1,000 in, failed (retried)              $0.002
    a6    research    model-a        1,000 in, 100 out                       $0.0028
    a7    supervisor  mystery-model  100 in, 7 out                           (unpriced)
    b2    support     house-llm      1,500 in, 500 out                       $0.008
    c2    supervisor  model-b        1,000 in, 1,000 out                     $0.018
                                                                     total   $0.06155

A negotiated 20% off OpenAI: model-a's three calls, $0.018 + $0.002 + $0.0028 = $0.0228,
cost $0.01824 (every rate x 0.8: $1.6 / $0.4 / $6.4 per million, exact), -$0.00456.
The total goes from $0.06155 to $0.05699.

The research agent on a cheaper model, by a sheet entry: model-b at $0.8 in, $1 cache
write, $4 out, only where agent=research. a4: 2,000 x 0.8 + 1,000 x 1 + 200 x 4 =
$0.0016 + $0.001 + $0.0008 = $0.0034 (was $0.01275): -$0.00935. c2 (model-b, but the
supervisor's) keeps $0.018.

The research agent's model-b calls as if sent to model-a (`--as-model model-b=model-a`,
model-a's own provider): a4 at 2,000 x 2 + 1,000 x 2 (model-a has no cache write price:
its input price) + 200 x 8 = $0.004 + $0.002 + $0.0016 = $0.0076: -$0.00515.
"""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from spanledger.server.config import GrpcListener, ServeConfig
from spanledger.server.reconcile_api import reconcile_routes
from spanledger.server.run import Server
from spanledger.store.duckdb import DuckDBStore
from spanledger.traces import Trace
from test_reports_cli import SHEET, TA, build_ledger, run, sid

TOKEN = "s3cret-reprice"
DISCOUNT = """\
version: acme-2027
models:
  - match: model-a
    provider: openai
    per_million: {input: 2, cache_read: 0.5, output: 8}
  - match: model-b
    provider: anthropic
    per_million: {input: 3, cache_read: 0.3, cache_write: 3.75, output: 15}
  - match: house-llm
    per_million: {input: 4, output: 4}
discounts:
  - provider: openai
    percent: 20
"""
CHEAPER_B = """\
version: cheaper-b
models:
  - match: model-b
    provider: anthropic
    per_million: {input: 0.8, cache_read: 0.08, cache_write: 1, output: 4}
"""


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ledger(tmp_path_factory.mktemp("reprice") / "ledger.duckdb")


@pytest.fixture(scope="module")
def sheets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("sheets")
    paths = {}
    for name, text in (("old", SHEET), ("discount", DISCOUNT), ("cheaper_b", CHEAPER_B)):
        paths[name] = directory / f"{name}.yaml"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def reprice(*args: str | Path) -> dict[str, Any]:
    result = run("reprice", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def rows_by(data: dict[str, Any], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in data["rows"]}


def usd(value: str) -> Decimal:
    return Decimal(value)


def test_a_negotiated_discount(ledger: Path, sheets: dict[str, Path]) -> None:
    data = reprice("--rates", sheets["discount"], "--no-default-prices", "--db", ledger)
    assert data["rates"] == [f"acme-2027 ({sheets['discount']})"]
    assert data["group_by"] == ["model"] and data["applied"] is None
    rows = rows_by(data, "model")
    model_a = rows["model-a"]
    assert usd(model_a["old_cost_usd"]) == Decimal("0.0228")
    assert usd(model_a["new_cost_usd"]) == Decimal("0.01824")
    assert usd(model_a["difference_usd"]) == Decimal("-0.00456")
    assert model_a["difference_pct"] == "-20.0000"
    assert (model_a["calls"], model_a["repriced_calls"], model_a["changed_calls"]) == (3, 3, 3)
    for model in ("model-b", "house-llm"):
        assert usd(rows[model]["difference_usd"]) == 0 and rows[model]["changed_calls"] == 0
    mystery = rows["mystery-model"]  # no price before or after: kept, counted, never $0
    assert (mystery["no_new_price_calls"], mystery["old_cost_usd"]) == (1, "0")
    total = data["total"]
    assert (usd(total["old_cost_usd"]), usd(total["new_cost_usd"])) == (
        Decimal("0.06155"),
        Decimal("0.05699"),
    )
    assert usd(total["difference_usd"]) == Decimal("-0.00456")


def test_a_cheaper_model_for_one_agent(ledger: Path, sheets: dict[str, Path]) -> None:
    # The old sheet, then the cheaper model-b entry over it, only for the research agent.
    data = reprice(
        "--rates", sheets["old"], "--rates", sheets["cheaper_b"], "--no-default-prices",
        "--where", "agent=research", "--group-by", "agent,model", "--db", ledger,
    )  # fmt: skip
    rows = {(row["agent"], row["model"]): row for row in data["rows"]}
    research_b = rows[("research", "model-b")]
    assert usd(research_b["old_cost_usd"]) == Decimal("0.01275")
    assert usd(research_b["new_cost_usd"]) == Decimal("0.0034")
    assert usd(research_b["difference_usd"]) == Decimal("-0.00935")
    research_a = rows[("research", "model-a")]  # the same price in both sheets
    assert research_a["repriced_calls"] == 2 and research_a["changed_calls"] == 0
    supervisor_b = rows[("supervisor", "model-b")]  # c2: not the research agent's
    assert supervisor_b["repriced_calls"] == 0
    assert supervisor_b["old_cost_usd"] == supervisor_b["new_cost_usd"] == "0.018"
    assert usd(data["total"]["difference_usd"]) == Decimal("-0.00935")
    assert data["where"] == {"agent": "research"}
    assert data["rows"][0] == research_b  # the biggest change first


def test_a_model_substitution_what_if(ledger: Path, sheets: dict[str, Path]) -> None:
    data = reprice(
        "--rates", sheets["old"], "--no-default-prices", "--where", "agent=research",
        "--as-model", "model-b=model-a", "--group-by", "agent", "--db", ledger,
    )  # fmt: skip
    research = rows_by(data, "agent")["research"]
    # a4 $0.01275 -> $0.0076; a5, a6 unchanged: $0.01755 -> $0.01240
    assert usd(research["old_cost_usd"]) == Decimal("0.01755")
    assert usd(research["new_cost_usd"]) == Decimal("0.0124")
    assert usd(research["difference_usd"]) == Decimal("-0.00515")
    assert data["models"] == {"model-b": "model-a"}


def test_the_table(ledger: Path, sheets: dict[str, Path]) -> None:
    result = run("reprice", "--rates", sheets["discount"], "--no-default-prices", "--db", ledger)
    assert result.returncode == 0, result.stderr
    assert "repriced with acme-2027" in result.stdout
    assert "$-0.004560" in result.stdout and "-20.0%" in result.stdout
    assert "add --apply to store the new costs" in result.stdout


def test_repricing_changes_nothing_stored(ledger: Path, sheets: dict[str, Path]) -> None:
    before = run("report", "--db", ledger, "--json").stdout
    reprice("--rates", sheets["discount"], "--no-default-prices", "--db", ledger)
    assert run("report", "--db", ledger, "--json").stdout == before
    with duckdb.connect(str(ledger), read_only=True) as db:
        tables = {row[0] for row in db.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "price_history" not in tables


def test_the_same_answer_through_a_running_server(
    ledger: Path, sheets: dict[str, Path], tmp_path: Path
) -> None:
    copy = shutil.copy(ledger, tmp_path / "served.duckdb")
    server = serve(Path(copy), sheets["old"])
    try:
        args = ("--rates", sheets["discount"], "--no-default-prices", "--group-by", "agent")
        served = reprice(*args, "--url", server.http_url, "--token", TOKEN)
        refused = run("reprice", *args, "--url", server.http_url)
    finally:
        server.close()
    direct = reprice(*args, "--db", ledger)
    assert served == direct
    assert refused.returncode == 1 and "bearer token" in refused.stderr


def serve(db: Path, sheet: Path) -> Server:
    grpc = {"enabled": False} if "enabled" in GrpcListener.model_fields else {"port": 0}
    config = ServeConfig.model_validate(
        {"db": str(db), "http": {"port": 0}, "grpc": grpc, "token": TOKEN,
         "rates": [str(sheet)], "use_default_prices": False}
    )  # fmt: skip
    server = Server.build(config)
    server.app.router.routes.extend(reconcile_routes(server.pipeline, token=TOKEN))
    return server.start()


# -- --apply ------------------------------------------------------------------------------


@pytest.fixture
def applied(ledger: Path, sheets: dict[str, Path], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    copy = Path(shutil.copy(ledger, tmp_path / "applied.duckdb"))
    data = reprice("--rates", sheets["discount"], "--no-default-prices", "--db", copy, "--apply")
    return copy, data


def test_apply_stores_the_new_costs_and_keeps_the_old(
    applied: tuple[Path, dict[str, Any]],
) -> None:
    path, data = applied
    # a2, a5, a6 cost less; a4, b2 and c2 cost the same, now from acme-2027's price list
    assert data["applied"]["spans"] == 6
    assert data["applied"]["run"].startswith("reprice ")
    assert "acme-2027" in data["applied"]["run"]
    report = json.loads(run("report", "--db", path, "--json").stdout)
    assert usd(report["total"]["cost_usd"]) == Decimal("0.05699")
    with duckdb.connect(str(path), read_only=True) as db:
        spans = {
            span_id: (cost, source)
            for span_id, cost, source in db.execute(
                "SELECT span_id, cost, price_source FROM spans WHERE model = 'model-a'"
            ).fetchall()
        }
        history = db.execute(
            "SELECT span_id, cost, price_source, new_cost, new_price_source, run, replaced_at "
            "FROM price_history ORDER BY span_id"
        ).fetchall()
    new_source = "acme-2027 less 20% (acme-2027)"
    assert spans == {
        sid("a2"): (Decimal(14_400 * 10**9), new_source),  # $0.0144
        sid("a5"): (Decimal(1_600 * 10**9), new_source),  # $0.0016
        sid("a6"): (Decimal(2_240 * 10**9), new_source),  # $0.00224
    }
    femto = 10**9  # femto-dollars in a micro-dollar
    old = "reports-test-2026"
    assert [row[:5] for row in history] == [
        (sid("a2"), 18_000 * femto, old, 14_400 * femto, new_source),
        (sid("a4"), 12_750 * femto, old, 12_750 * femto, "acme-2027"),
        (sid("a5"), 2_000 * femto, old, 1_600 * femto, new_source),
        (sid("a6"), 2_800 * femto, old, 2_240 * femto, new_source),
        (sid("b2"), 8_000 * femto, old, 8_000 * femto, "acme-2027"),
        (sid("c2"), 18_000 * femto, old, 18_000 * femto, "acme-2027"),
    ]
    assert {row[5] for row in history} == {data["applied"]["run"]}
    assert all(row[6] is not None for row in history)


def test_apply_moves_rollups_and_trace_totals_as_assembly_would(
    applied: tuple[Path, dict[str, Any]],
) -> None:
    # trace A: $0.03555 - $0.00456 = $0.03099; retry overhead (a5) $0.002 -> $0.0016
    path, _ = applied
    store = DuckDBStore(path)
    try:
        summary = store.trace_summary(TA)
        stored = {span["span_id"]: span["rollup"] for span in store.trace_spans(TA)}
        trace = Trace(TA, loop_threshold=2)
        for span in store.load_trace(TA):  # priced as now stored: assemble from scratch
            trace.add(span)
        trace.assemble()
    finally:
        store.close()
    assert summary is not None
    assert summary["cost"] == Decimal(30_990 * 10**9) == trace.cost
    assert summary["retry_overhead"] == Decimal(1_600 * 10**9) == trace.retry_overhead
    assert summary["loop_cost"] == trace.loop_cost
    assert stored == {span_id: Decimal(span.rollup) for span_id, span in trace.spans.items()}
    assert stored[sid("a1")] == Decimal(30_990 * 10**9)  # the root: the whole action
    assert stored[sid("a3")] == Decimal(16_590 * 10**9)  # research: $0.01275 + $0.0016 + $0.00224


def test_apply_again_changes_nothing(
    applied: tuple[Path, dict[str, Any]], sheets: dict[str, Path]
) -> None:
    path, _ = applied
    again = reprice("--rates", sheets["discount"], "--no-default-prices", "--db", path, "--apply")
    assert again["applied"]["spans"] == 0
    assert usd(again["total"]["difference_usd"]) == 0


def test_apply_refuses_what_it_must_not_do(
    ledger: Path, sheets: dict[str, Path], tmp_path: Path
) -> None:
    rates = ("--rates", sheets["discount"], "--no-default-prices")
    cases = [
        ((*rates, "--url", "http://127.0.0.1:9", "--apply"), 2, "give --db FILE"),
        ((*rates, "--apply"), 2, "name the ledger with --db"),
        ((*rates, "--db", ledger, "--as-model", "model-b=model-a", "--apply"), 2, "what-if"),
        ((*rates, "--db", tmp_path / "none.duckdb", "--apply"), 1, "no ledger at"),
        ((*rates, "--where", "colour=blue", "--db", ledger), 2, "cannot select on colour"),
        ((*rates, "--as-model", "model-b", "--db", ledger), 2, "write NAME=VALUE"),
    ]
    for args, code, message in cases:
        result = run("reprice", *args)
        assert result.returncode == code, (args, result.stderr)
        assert message in " ".join(result.stderr.split()), (args, result.stderr)
    bad_sheet = tmp_path / "bad.yaml"
    bad_sheet.write_text("models:\n  - match: x\n    per_million: {input: -1, output: 1}\n")
    result = run("reprice", "--rates", bad_sheet, "--db", ledger)
    assert result.returncode == 2 and f"{bad_sheet}:3" in result.stderr


def test_apply_refuses_a_ledger_a_server_holds(
    ledger: Path, sheets: dict[str, Path], tmp_path: Path
) -> None:
    copy = Path(shutil.copy(ledger, tmp_path / "busy.duckdb"))
    server = serve(copy, sheets["old"])
    try:
        result = run("reprice", "--rates", sheets["discount"], "--db", copy, "--apply")
    finally:
        server.close()
    assert result.returncode == 1
    assert "open in another process" in " ".join(result.stderr.split())
    with duckdb.connect(str(copy), read_only=True) as db:
        assert db.execute("SELECT sum(cost) FROM spans").fetchone()[0] == Decimal(61_550 * 10**9)
