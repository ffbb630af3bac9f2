"""`spanledger cost` and `spanledger prices`, run as a user runs them: the installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
SPANLEDGER = Path(sys.executable).parent / "spanledger"

SHEET = """\
version: cli-test
models:
  - match: model-a
    per_million: {input: 2, cache_read: 0.5, output: 8}
"""
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SPANLEDGER), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def otlp_line(spans: list[dict[str, object]]) -> str:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]
                    },
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
                }
            ]
        }
    )


def otlp_span(span_id: str, parent: str, name: str, **attrs: int | str) -> dict[str, object]:
    values = [
        {"key": key, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
        for key, v in attrs.items()
    ]
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 1,
        "startTimeUnixNano": "1764000000000000000",
        "endTimeUnixNano": "1764000001000000000",
        "attributes": values,
        "status": {},
    }


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    sheet = tmp_path / "rates.yaml"
    sheet.write_text(SHEET)
    traces = tmp_path / "traces.jsonl"
    llm = {"gen_ai.request.model": "model-a", "gen_ai.provider.name": "openai"}
    # Child batch first, parent batch second: the file exporter's order is not the tree's.
    traces.write_text(
        otlp_line(
            [
                otlp_span(
                    "00000000000000b2",
                    "00000000000000a1",
                    "chat model-a",
                    **llm,
                    **{
                        "gen_ai.usage.input_tokens": 10_000,
                        "gen_ai.usage.cache_read.input_tokens": 4_000,
                        "gen_ai.usage.output_tokens": 500,
                    },
                ),
                otlp_span(
                    "00000000000000b3",
                    "00000000000000a1",
                    "chat mystery",
                    **{
                        "gen_ai.request.model": "mystery-model",
                        "gen_ai.usage.input_tokens": 100,
                        "gen_ai.usage.output_tokens": 7,
                    },
                ),
            ]
        )
        + "\n"
        + otlp_line([otlp_span("00000000000000a1", "", "handle", **{"user.id": "u-7"})])
        + "\n"
    )
    return traces, sheet


def test_cost_json_prices_rolls_up_and_lists_unpriced(files: tuple[Path, Path]) -> None:
    traces, sheet = files
    result = run("cost", traces, "--rates", sheet, "--no-default-prices", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (trace,) = report["traces"]
    # 6,000 uncached * $2/M = $0.012; 4,000 cache reads * $0.5/M = $0.002;
    # 500 output * $8/M = $0.004; total $0.018. The mystery model is unpriced.
    spans = {span["span_id"]: span for span in trace["spans"]}
    assert Decimal(spans["00000000000000b2"]["cost_usd"]) == Decimal("0.018")
    assert spans["00000000000000b2"]["cache_status"] == "partial"
    # saved: 4,000 * ($2 - $0.5)/M = $0.006
    assert Decimal(spans["00000000000000b2"]["saved_by_cache_usd"]) == Decimal("0.006")
    assert spans["00000000000000b2"]["attribution"] == {"user": "u-7", "service": "api"}
    assert spans["00000000000000b3"]["price_status"] == "unpriced"
    assert spans["00000000000000b3"]["cost_usd"] is None
    assert Decimal(spans["00000000000000a1"]["rollup_usd"]) == Decimal("0.018")
    assert Decimal(trace["cost_usd"]) == Decimal("0.018")
    assert trace["complete"] is True
    assert report["totals"]["unpriced_spans"] == 1
    assert report["totals"]["unpriced_models"] == {
        "mystery-model": {"spans": 1, "input": 100, "output": 7}
    }


def test_cost_table_names_unpriced_models(files: tuple[Path, Path]) -> None:
    traces, sheet = files
    result = run("cost", traces, "--rates", sheet, "--no-default-prices")
    assert result.returncode == 0, result.stderr
    assert "$0.018000" in result.stdout
    assert "unpriced mystery-model: 1 spans" in result.stdout


def test_unreadable_file_is_named_and_others_still_priced(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    traces, sheet = files
    broken = tmp_path / "broken.jsonl"
    broken.write_text(otlp_line([]) + "\n{not json\n")
    missing = tmp_path / "missing.jsonl"
    result = run("cost", broken, missing, traces, "--rates", sheet, "--no-default-prices", "--json")
    assert result.returncode == 1
    assert "broken.jsonl:2" in result.stderr
    assert "missing.jsonl" in result.stderr
    report = json.loads(result.stdout)
    assert Decimal(report["totals"]["cost_usd"]) == Decimal("0.018")


def test_bad_rate_sheet_stops_with_file_line_and_reason(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    traces, _ = files
    sheet = tmp_path / "bad.yaml"
    sheet.write_text("models:\n  - match: x\n    per_million: {input: 1}\n")
    result = run("cost", traces, "--rates", sheet)
    assert result.returncode == 2
    assert "bad.yaml:3" in result.stderr
    assert "output" in result.stderr


def test_bundled_sample_prices_with_both_formats_identically() -> None:
    as_json = run(
        "cost", EXAMPLES / "agent-traces.jsonl", "--rates", EXAMPLES / "rates.yaml", "--json"
    )
    as_proto = run(
        "cost", EXAMPLES / "agent-traces.binpb", "--rates", EXAMPLES / "rates.yaml", "--json"
    )
    assert as_json.returncode == as_proto.returncode == 0
    assert json.loads(as_json.stdout) == json.loads(as_proto.stdout)
    totals = json.loads(as_json.stdout)["totals"]
    assert totals["traces"] == 7
    assert Decimal(totals["loop_cost_usd"]) > 0
    assert "acme-internal-llm-v2" in totals["unpriced_models"]


def test_prices_shows_sheet_rates_and_unknown_model(files: tuple[Path, Path]) -> None:
    _, sheet = files
    result = run("prices", "model-a", "--rates", sheet, "--no-default-prices", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["source"] == "cli-test"
    base = shown["per_million"][0]
    # cache_write is not in the sheet: it falls back to the input price.
    assert (base["input"], base["cache_read"], base["cache_write"], base["output"]) == (
        "2",
        "0.5",
        "2",
        "8",
    )
    unknown = run("prices", "no-such-model", "--no-default-prices")
    assert unknown.returncode == 1
    assert "unpriced" in unknown.stdout
