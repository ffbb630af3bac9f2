"""`spanledger` command line: price trace files, show prices."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from spanledger.pricing import PriceBook, RateSheetError, display
from spanledger.pricing.money import femto_from_usd as from_usd
from spanledger.pricing.money import per_million
from spanledger.reports.tree import totals, trace_table, traces_json
from spanledger.server.otlp import OtlpDecodeError, read_file
from spanledger.traces import DEFAULT_LOOP_THRESHOLD, TraceAssembler

if TYPE_CHECKING:
    from spanledger.reports.source import LedgerSource
    from spanledger.store.duckdb import DuckDBStore

app = typer.Typer(
    help="SpanLedger: the cost of every span of your LLM traces.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
if not out.is_terminal:
    out = Console(width=160)  # piped or captured: don't squeeze the trees into 80 columns
err = Console(stderr=True)

RatesOption = Annotated[
    list[Path] | None,
    typer.Option("--rates", help="YAML rate sheet over the defaults; repeat, later files win."),
]
NoDefaultsOption = Annotated[
    bool,
    typer.Option("--no-default-prices", help="Price only from --rates sheets, not genai-prices."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _book(rates: list[Path] | None, no_default_prices: bool) -> PriceBook:
    try:
        return PriceBook.from_files(
            [str(path) for path in rates or []], use_defaults=not no_default_prices
        )
    except RateSheetError as error:
        err.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _money(decimal_string: str) -> str:
    return display(from_usd(decimal_string) or 0)


@app.command()
def cost(
    files: Annotated[list[Path], typer.Argument(help="OTLP trace files: JSON lines or protobuf.")],
    rates: RatesOption = None,
    no_default_prices: NoDefaultsOption = False,
    as_json: JsonOption = False,
    loop_threshold: Annotated[
        int, typer.Option(help="Repeats of one tool/model under a parent that make a loop.")
    ] = DEFAULT_LOOP_THRESHOLD,
) -> None:
    """Price every span of OTLP trace files and show each trace as a tree."""
    assembler = TraceAssembler(_book(rates, no_default_prices), loop_threshold=loop_threshold)
    failed = 0
    for path in files:
        try:
            records = read_file(path)
        except OtlpDecodeError as error:
            failed += 1
            err.print(f"error: {error}", markup=False, highlight=False)
            continue
        assembler.add(records)
    traces = assembler.traces()
    if as_json:
        sys.stdout.write(json.dumps(traces_json(traces), indent=2) + "\n")
    else:
        for trace in traces:
            out.print(trace_table(trace))
            out.print()
        summary = totals(traces)
        out.print(
            f"[bold]{summary['traces']} traces, {summary['spans']} spans, "
            f"total {_money(summary['cost_usd'])}[/bold]  "
            f"(saved by cache {_money(summary['saved_by_cache_usd'])}, "
            f"retry overhead {_money(summary['retry_overhead_usd'])}, "
            f"in loops {_money(summary['loop_cost_usd'])})",
            highlight=False,
        )
        for model, counts in summary["unpriced_models"].items():
            out.print(
                f"[magenta]unpriced[/magenta] {model}: {counts['spans']} spans, "
                f"{counts['input']:,} input + {counts['output']:,} output tokens "
                "(add it to a rate sheet with --rates)",
                highlight=False,
                markup=True,
            )
        if summary["invalid_usage_spans"]:
            out.print(
                f"[red]{summary['invalid_usage_spans']} spans with impossible token counts[/red]"
                " (see price_reason in --json)"
            )
    if failed:
        raise typer.Exit(1)


@app.command()
def prices(
    model: Annotated[str, typer.Argument(help="Model name as it appears on spans.")],
    provider: Annotated[str | None, typer.Option(help="Provider, e.g. openai.")] = None,
    at: Annotated[
        str | None, typer.Option(help="Date (YYYY-MM-DD) the price applies to; default today.")
    ] = None,
    rates: RatesOption = None,
    no_default_prices: NoDefaultsOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show the rates SpanLedger would apply to a model (USD per million tokens)."""
    book = _book(rates, no_default_prices)
    try:
        day = dt.date.fromisoformat(at) if at else dt.datetime.now(dt.UTC).date()
    except ValueError:
        err.print(f"error: --at {at!r} is not a date like 2026-11-25", markup=False)
        raise typer.Exit(2) from None
    start_ns = int(dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC).timestamp()) * 10**9
    found = book.rates(provider, model, start_ns)
    if found is None:
        message = f"{model}: unpriced (no rate sheet or genai-prices entry matches)"
        if as_json:
            sys.stdout.write(json.dumps({"model": model, "status": "unpriced"}) + "\n")
        else:
            out.print(message, markup=False)
        raise typer.Exit(1)
    lines = [("base", found.base), *((f"> {above:,} input", line) for above, line in found.tiers)]
    result = {
        "model": found.model,
        "provider": found.provider,
        "source": found.source,
        "date": day.isoformat(),
        "per_million": [
            {
                "applies": label,
                **{
                    kind: format(per_million(getattr(line, kind)), "f")
                    for kind in ("input", "cache_read", "cache_write", "cache_write_1h", "output")
                },
            }
            for label, line in lines
        ],
    }
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    out.print(f"{found.model} ({found.provider}) on {day}: {found.source}", markup=False)
    for row in result["per_million"]:
        out.print(
            f"  {row['applies']:>16}: input ${row['input']}, cache read ${row['cache_read']}, "
            f"cache write ${row['cache_write']} (1h ${row['cache_write_1h']}), "
            f"output ${row['output']} per million tokens",
            markup=False,
            highlight=False,
        )


@app.command()
def serve(
    db: Annotated[str | None, typer.Option(help="DuckDB file (default spanledger.duckdb).")] = None,
    http_port: Annotated[int | None, typer.Option(help="OTLP/HTTP and API port (4318).")] = None,
    grpc_port: Annotated[
        int | None,
        typer.Option(help="OTLP/gRPC port (4317); 0: any free port (off: grpc.enabled: false)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (127.0.0.1).")] = None,
    rates: RatesOption = None,
    no_default_prices: NoDefaultsOption = False,
    forward: Annotated[
        str | None, typer.Option(help="Forward enriched spans to this OTLP/HTTP endpoint.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="SPANLEDGER_TOKEN", help="Require this bearer token.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config; flags override it.")] = None,
) -> None:
    """Receive OTLP traces, price and store every span, serve the API and dashboard."""
    from spanledger.server.config import ConfigError, ServeConfig
    from spanledger.server.run import Server

    try:
        settings = ServeConfig.load(config)
        overrides: dict[str, object] = {
            "db": db,
            "token": token,
            "rates": [str(path) for path in rates] if rates else None,
            "use_default_prices": False if no_default_prices else None,
            "forward": {"url": forward} if forward else None,
        }
        data = settings.model_dump()
        data.update({key: value for key, value in overrides.items() if value is not None})
        for listener, port in (("http", http_port), ("grpc", grpc_port)):
            if port is not None:
                data[listener]["port"] = port
            if host is not None:
                data[listener]["host"] = host
        settings = ServeConfig.model_validate(data)
        server = Server.build(settings)
    except (ConfigError, RateSheetError, ValueError) as error:
        err.print(f"error: {error}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    out.print(
        f"SpanLedger on {server.http_url} (OTLP/HTTP /v1/traces, dashboard /, API /api, "
        f"/metrics), OTLP/gRPC "
        + (f"{settings.grpc.host}:{settings.grpc.port}" if settings.grpc.enabled else "off")
        + f", store {settings.db}",
        markup=False,
        highlight=False,
    )
    server.run()


# -- reports over a ledger: report, trace, export focus -----------------------------------
# Each reads a ledger file (--db, read-only) or a running server (--url): the same rows.

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="Ledger file to read (default ./spanledger.duckdb)."),
]
UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Read a running server instead, e.g. http://127.0.0.1:4318."),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="SPANLEDGER_TOKEN", help="Bearer token for --url."),
]
FromOption = Annotated[
    str | None,
    typer.Option("--from", help="Start, inclusive: ISO 8601 date or time (UTC if no offset)."),
]
ToOption = Annotated[
    str | None,
    typer.Option("--to", help="End, exclusive: ISO 8601 date or time (UTC if no offset)."),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def _moment(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{option} {value!r} is not an ISO 8601 date or time, e.g. 2026-11-02 or "
              "2026-11-02T09:00:00Z")  # fmt: skip
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _window(start: str | None, end: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    since, until = _moment(start, "--from"), _moment(end, "--to")
    if since is not None and until is not None and since >= until:
        _fail(f"--from {start} is not before --to {end}")
    return since, until


def _open_ledger(db: Path | None, url: str | None, token: str | None) -> LedgerSource:
    from spanledger.reports.source import LedgerError, open_source

    try:
        return open_source(db, url, token)
    except LedgerError as error:
        _fail(str(error), 1)


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


@app.command()
def report(
    group_by: Annotated[
        str,
        typer.Option(
            "--group-by",
            help="Comma-separated dimensions: user, department, tenant, agent, conversation, "
            "service, model, provider, day, hour, price_status, agent_path.",
        ),
    ] = "model",
    since: FromOption = None,
    until: ToOption = None,
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV (exact money).")] = False,
) -> None:
    """Spend per group: cost, tokens, calls, cache savings, retry overhead, share of total."""
    from spanledger.reports.source import LedgerError
    from spanledger.reports.tables import (
        cost_report,
        report_json,
        report_table,
        unpriced_lines,
        write_report_csv,
    )
    from spanledger.store import GROUPABLE

    if as_json and as_csv:
        _fail("choose one of --json and --csv")
    groups = list(dict.fromkeys(g.strip() for g in group_by.split(",") if g.strip()))
    unknown = [g for g in groups if g not in GROUPABLE]
    if unknown:
        _fail(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUPABLE)}")
    start, end = _window(since, until)
    ledger = _open_ledger(db, url, token)
    try:
        result = cost_report(ledger, groups, start, end)
    except LedgerError as error:
        _fail(str(error), 1)
    finally:
        ledger.close()
    if as_json:
        _print_json(report_json(result))
    elif as_csv:
        write_report_csv(result, sys.stdout)
    else:
        out.print(report_table(result, source=ledger.description))
        for line in unpriced_lines(result):
            out.print(line)


@app.command()
def trace(
    trace_id: Annotated[str, typer.Argument(help="Trace id: 32 hex digits.")],
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One stored trace as a tree: self and rollup cost, tokens, cache, flags, attribution."""
    from spanledger.reports.source import LedgerError, to_json
    from spanledger.reports.tree import stored_trace_table

    wanted = trace_id.strip().lower()
    if len(wanted) != 32 or any(ch not in "0123456789abcdef" for ch in wanted):
        _fail(f"{trace_id!r} is not a trace id (32 hex digits)")
    ledger = _open_ledger(db, url, token)
    try:
        found = ledger.trace(wanted)
    except LedgerError as error:
        _fail(str(error), 1)
    finally:
        ledger.close()
    if found is None:
        _fail(f"no trace {wanted} in {ledger.description}", 1)
    if as_json:
        _print_json(to_json(found))
        return
    out.print(stored_trace_table(found["trace"], found["spans"]))


export_app = typer.Typer(help="Export the ledger for other tools.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("focus")
def export_focus(
    out_path: Annotated[
        Path, typer.Option("--out", help="File to write: .csv or .parquet (FOCUS 1.2).")
    ],
    since: FromOption = None,
    until: ToOption = None,
    grain: Annotated[
        str, typer.Option(help="span: a row per LLM span; hour: per hour, model, dimensions.")
    ] = "span",
    account: Annotated[
        str, typer.Option(help="BillingAccountId of the charges (the organization traced).")
    ] = "spanledger",
    account_name: Annotated[
        str | None, typer.Option(help="BillingAccountName (default: the --account id).")
    ] = None,
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write LLM spend as FOCUS 1.2 rows (FinOps Open Cost and Usage Specification)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from spanledger.pricing.money import usd_str
    from spanledger.reports import focus
    from spanledger.reports.source import LedgerError, iso

    if grain not in focus.GRAINS:
        _fail(f"--grain {grain!r}: choose span or hour")
    if out_path.suffix.lower() not in (".csv", ".parquet"):
        _fail(f"--out {out_path}: write FOCUS to a .csv or .parquet file")
    if not out_path.parent.is_dir():
        _fail(f"--out {out_path}: no directory {out_path.parent}")
    start, end = _window(since, until)
    ledger = _open_ledger(db, url, token)
    excluded = focus.Excluded()
    billed = 0

    def tally(rows: Iterable[dict[str, object]]) -> Iterator[dict[str, object]]:
        nonlocal billed
        for row in rows:
            billed += int(row["BilledCost"])  # type: ignore[call-overload]
            yield row

    fmt = out_path.suffix.lower().lstrip(".")
    partial = out_path.with_name(f".{out_path.name}.partial")  # renamed once complete
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )  # fmt: skip
    try:
        with progress:
            task = progress.add_task("reading traces" if url else "reading spans", total=None)
            spans = ledger.llm_spans(
                start, end, lambda done, total: progress.update(task, completed=done, total=total)
            )
            rows = focus.charges(
                spans,
                grain=grain,  # type: ignore[arg-type]
                account=focus.Account(account, account_name),
                excluded=excluded,
            )
            written = focus.write(tally(rows), partial, fmt)
        partial.replace(out_path)
    except LedgerError as error:
        partial.unlink(missing_ok=True)
        _fail(str(error), 1)
    except OSError as error:
        partial.unlink(missing_ok=True)
        _fail(f"cannot write {out_path}: {error.strerror or error}", 1)
    finally:
        ledger.close()
    summary = {
        "out": str(out_path),
        "format": fmt,
        "focus_version": focus.FOCUS_VERSION,
        "grain": grain,
        "from": iso(start) if start else None,
        "to": iso(end) if end else None,
        "rows": written,
        "billed_cost_usd": usd_str(billed),
        "excluded_unpriced": excluded.as_dict(),
    }
    if excluded.spans:
        models = ", ".join(f"{model} ({n})" for model, n in sorted(excluded.models.items()))
        err.print(
            f"warning: {excluded.spans} LLM spans without a price left out "
            f"({excluded.input_tokens:,} input + {excluded.output_tokens:,} output tokens; "
            f"{models}): FOCUS costs cannot be null, and they did not cost $0. "
            "Price them with a rate sheet (serve --rates).",
            markup=False,
            highlight=False,
        )
    if as_json:
        _print_json(summary)
    else:
        out.print(
            f"wrote {written:,} FOCUS {focus.FOCUS_VERSION} rows ({grain} grain) to {out_path}: "
            f"billed {_money(summary['billed_cost_usd'])}",
            markup=False,
            highlight=False,
        )


# -- reconcile and reprice ----------------------------------------------------------------


def _whole_day(moment: dt.datetime | None, option: str) -> dt.date | None:
    if moment is None:
        return None
    if moment.time() != dt.time(0):
        _fail(f"{option}: bills are daily; give a day like 2026-11-02 (UTC)")
    return moment.date()


@app.command()
def reconcile(
    bills: Annotated[
        list[Path],
        typer.Option(
            "--bill",
            help="A provider's usage or cost export: OpenAI or Anthropic Admin API JSON, "
            "Anthropic Console CSV, or generic CSV. Repeat for several.",
        ),
    ],
    since: FromOption = None,
    until: ToOption = None,
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    allow_bad_rows: Annotated[
        bool,
        typer.Option(
            "--allow-bad-rows", help="Compare the rows that can be read; list the others."
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Compare provider bills with the ledger and explain the gap, cause by cause."""
    from spanledger.reports.bills import BillError, read_bill
    from spanledger.reports.reconcile import (
        bill_window,
        reconcile_json,
        reconcile_table,
    )
    from spanledger.reports.reconcile import reconcile as compare
    from spanledger.reports.source import LedgerError

    start, end = _window(since, until)
    first, last = _whole_day(start, "--from"), _whole_day(end, "--to")
    read = []
    for path in bills:
        try:
            read.append(read_bill(path))
        except BillError as error:
            _fail(str(error))
    bad = [row for bill in read for row in bill.bad_rows]
    if bad and not allow_bad_rows:
        for row in bad:
            err.print(f"bad row {row}", markup=False, highlight=False, soft_wrap=True)
        _fail(
            f"{len(bad)} bill rows cannot be read (listed above): fix them, or compare the "
            "rest with --allow-bad-rows (they stay listed)",
            1,
        )
    window = bill_window(read)
    first = first or (window[0] if window else None)
    last = last or (window[1] if window else None)
    if first is None or last is None:
        _fail("the bills have no rows: nothing to reconcile", 1)
    if first >= last:
        _fail(f"--from {first} is not before --to {last}")
    midnight = dt.time(0, tzinfo=dt.UTC)
    ledger = _open_ledger(db, url, token)
    try:
        rows = ledger.ledger_daily(
            dt.datetime.combine(first, midnight), dt.datetime.combine(last, midnight)
        )
    except LedgerError as error:
        _fail(str(error), 1)
    finally:
        ledger.close()
    data = reconcile_json(compare(read, rows, first, last, source=ledger.description))
    if as_json:
        _print_json(data)
    else:
        out.print(reconcile_table(data))


@app.command()
def reprice(
    rates: Annotated[
        list[Path],
        typer.Option("--rates", help="The new YAML rate sheet; repeat, later files win."),
    ],
    no_default_prices: NoDefaultsOption = False,
    since: FromOption = None,
    until: ToOption = None,
    group_by: Annotated[
        str,
        typer.Option("--group-by", help="Comma-separated dimensions, as for `report`."),
    ] = "model",
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Reprice only calls with DIM=VALUE (e.g. agent=research); repeat. The others "
            "keep their stored cost.",
        ),
    ] = None,
    as_model: Annotated[
        list[str] | None,
        typer.Option(
            "--as-model",
            help="What if calls to OLD had gone to NEW (the same tokens): OLD=NEW; repeat.",
        ),
    ] = None,
    db: DbOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Store the new costs (--db only, server stopped); old prices are kept in "
            "price_history.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """What the stored spend would have cost under another rate sheet: old, new, difference."""
    from spanledger.reports import reprice as rp
    from spanledger.reports.source import LedgerError

    groups = list(dict.fromkeys(g.strip() for g in group_by.split(",") if g.strip()))
    try:
        wanted = rp.parse_pairs(where or [], "--where")
        models = rp.parse_pairs(as_model or [], "--as-model")
        rp.check_dimensions(groups, "group by")
        rp.check_dimensions(wanted, "select on")
    except rp.RepriceError as error:
        _fail(str(error))
    if apply and url is not None:
        _fail("--apply rewrites a ledger file: give --db FILE (with the server stopped)")
    if apply and db is None:
        _fail("--apply rewrites stored costs: name the ledger with --db FILE")
    if apply and models:
        _fail("--as-model is a what-if: the calls did go to the other model; drop --apply")
    start, end = _window(since, until)
    sheets = []
    for path in rates:
        try:
            sheets.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as error:
            _fail(f"{path}: cannot read rate sheet: {getattr(error, 'strerror', None) or error}")
    try:
        book, labels = rp.book_from_sheets(sheets, use_defaults=not no_default_prices)
    except RateSheetError as error:
        _fail(str(error))

    def compute(calls: Iterable[dict[str, object]], keep: bool) -> rp.Repricing:
        return rp.reprice(
            calls, book, groups, start=start, end=end, where=wanted, models=models,
            sheets=labels, keep_changes=keep,
        )  # fmt: skip

    if apply:
        assert db is not None
        store = _writable_ledger(db)
        try:
            result = compute(rp.calls_from_store(store, start, end), True)
            at = dt.datetime.now(dt.UTC)
            run = rp.run_label(result, at)
            changed = store.apply_prices(result.changes, run=run)
            result.applied = {"spans": changed, "run": run, "at": at.isoformat()}
        finally:
            store.close()
        data = rp.reprice_json(result)
    elif url is not None:
        data = _remote_reprice(url, token, sheets, not no_default_prices, groups, wanted,
                               models, start, end)  # fmt: skip
    else:
        ledger = _open_ledger(db, None, None)
        try:
            data = rp.reprice_json(compute(rp.calls_from_store(ledger._store, start, end), False))  # type: ignore[attr-defined]
        except LedgerError as error:
            _fail(str(error), 1)
        finally:
            ledger.close()
    if as_json:
        _print_json(data)
        return
    out.print(rp.reprice_table(data))
    if data["applied"]:
        out.print(
            f"applied: {data['applied']['spans']:,} spans in {db} now carry the new prices "
            f"({data['total']['changed_calls']:,} at a new cost); their old prices are in "
            f"price_history, run {data['applied']['run']!r}",
            markup=False,
            highlight=False,
        )
    elif data["total"]["changed_calls"]:
        out.print("nothing stored changed (add --apply to store the new costs)", style="dim")


def _writable_ledger(path: Path) -> DuckDBStore:
    """The ledger opened for writing, or a clear error (missing, not a ledger, in use)."""
    import duckdb

    from spanledger.store.duckdb import DuckDBStore

    if not path.is_file():
        _fail(f"no ledger at {path}", 1)
    try:
        probe = duckdb.connect(str(path))
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            _fail(
                f"{path} is open in another process (a running `spanledger serve`?): stop "
                "it first, --apply rewrites stored costs; or see the what-if without --apply",
                1,
            )
        _fail(f"cannot open {path}: {error}", 1)
    except duckdb.Error as error:
        _fail(f"{path} is not a DuckDB ledger: {error}", 1)
    try:
        tables = {
            row[0] for row in probe.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
    finally:
        probe.close()
    if not {"spans", "traces"} <= tables:
        _fail(f"{path} is a DuckDB file but not a SpanLedger ledger (no spans)", 1)
    return DuckDBStore(path)


def _remote_reprice(
    url: str,
    token: str | None,
    sheets: list[tuple[str, str]],
    use_defaults: bool,
    groups: list[str],
    where: dict[str, str],
    models: dict[str, str],
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> dict[str, object]:
    """`POST /api/reprice` on a running server: it reprices its own ledger."""
    import httpx

    from spanledger.reports.source import iso

    body = {
        "sheets": [{"name": name, "content": text} for name, text in sheets],
        "use_default_prices": use_defaults,
        "group_by": groups,
        "where": where,
        "models": models,
        "from": iso(start) if start else None,
        "to": iso(end) if end else None,
    }
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        _fail(f"--url {url!r} is not an http:// or https:// address")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(f"{base}/api/reprice", json=body, headers=headers, timeout=300)
    except httpx.HTTPError as error:
        _fail(f"cannot reach {base} ({error}); is `spanledger serve` running there?", 1)
    if response.status_code == 401:
        _fail(f"{base} wants a bearer token: pass --token or set SPANLEDGER_TOKEN", 1)
    if response.status_code == 404:
        _fail(f"{base} has no /api/reprice (an older server?): reprice a copy of its ledger "
              "with --db", 1)  # fmt: skip
    try:
        data = response.json()
    except ValueError:
        data = None
    if response.status_code != 200 or not isinstance(data, dict):
        reason = data.get("error") if isinstance(data, dict) else response.text[:200]
        _fail(f"{base}/api/reprice answered {response.status_code}: {reason}", 1)
    return data


if __name__ == "__main__":  # pragma: no cover
    app()
