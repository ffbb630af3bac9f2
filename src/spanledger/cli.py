"""`spanledger` command line: price trace files, show prices."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from spanledger.pricing import PriceBook, RateSheetError, display
from spanledger.pricing.money import femto_from_usd as from_usd
from spanledger.pricing.money import per_million
from spanledger.reports.tree import totals, trace_table, traces_json
from spanledger.server.otlp import OtlpDecodeError, read_file
from spanledger.traces import DEFAULT_LOOP_THRESHOLD, TraceAssembler

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
    grpc_port: Annotated[int | None, typer.Option(help="OTLP/gRPC port (4317); 0: off.")] = None,
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
        f"SpanLedger on {server.http_url} (OTLP/HTTP /v1/traces, API /api, /metrics), "
        f"store {settings.db}",
        markup=False,
        highlight=False,
    )
    server.run()


if __name__ == "__main__":  # pragma: no cover
    app()
