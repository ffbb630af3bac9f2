"""`make demo`: start SpanLedger, drive a multi-agent workload through it, show the ledger.

Starts `spanledger serve` on its embedded DuckDB (demo.duckdb), the bundled fake provider,
and the demo workload (real OTel SDK, real openai/anthropic SDKs); prints a cost report,
the runaway trace's cost and where to look; leaves the server running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from spanledger.demo.provider import FakeProvider

ROOT = Path(__file__).resolve().parents[3]
SPANLEDGER = Path(sys.executable).parent / "spanledger"


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port")


def wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"spanledger serve exited with {server.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"spanledger serve did not answer on {url} within {timeout:g}s")


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spanledger.demo", description=__doc__)
    parser.add_argument("--db", default="demo.duckdb")
    parser.add_argument("--port", type=int, default=4318)
    parser.add_argument("--exit", action="store_true", help="stop the server when done")
    args = parser.parse_args(argv)

    for leftover in (args.db, f"{args.db}.wal"):
        Path(leftover).unlink(missing_ok=True)
    port = free_port(args.port)
    url = f"http://127.0.0.1:{port}"
    rates = ROOT / "examples" / "rates.yaml"
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "demo-serve.yaml"
        config.write_text("finalize_after_seconds: 1\ngrpc: {enabled: false}\n")
        server = subprocess.Popen(
            [str(SPANLEDGER), "serve", "--db", args.db, "--http-port", str(port),
             "--rates", str(rates), "--config", str(config)]
        )  # fmt: skip
        try:
            wait_until_up(url, server)
            run_workload(url, rates, args.db)
            if args.exit:
                return
            print(f"\nSpanLedger keeps running on {url}; press Ctrl-C to stop it.")
            server.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(15)


def run_workload(url: str, rates: Path, db: str) -> None:
    from spanledger.demo.workload import Workload  # imports the SDKs: only when needed

    started = time.monotonic()
    with FakeProvider() as fake:
        workload = Workload(url, fake.url or "", rates=[str(rates)])
        try:
            results = workload.run_all()
        finally:
            workload.close()
    elapsed = time.monotonic() - started
    time.sleep(2.5)  # the server finalizes traces 1 s after their last span
    runaway = next(result for result in results if result.stopped)
    print(f"\nWorkload: {len(results)} user requests through the real OpenAI and Anthropic "
          f"SDKs in {elapsed:.1f} s\n")  # fmt: skip
    subprocess.run(
        [str(SPANLEDGER), "report", "--url", url, "--group-by", "user,agent"], check=False
    )
    trace = get(f"{url}/api/traces/{runaway.trace_id}")["trace"] or {}
    print(
        f"\nRunaway trace {runaway.trace_id} (user {runaway.user}): "
        f"${trace.get('cost', '?')} in total, ${trace.get('loop_cost', '?')} of it inside "
        f"the loop, stopped by its budget:\n  {runaway.stopped}"
    )
    print(
        f"\nWhere to look:\n"
        f"  dashboard     {url}/\n"
        f"  the runaway   {url}/#/trace/{runaway.trace_id}\n"
        f"  API           {url}/api/costs?group_by=user,model\n"
        f"  Prometheus    {url}/metrics\n"
        f"  in the shell  .venv/bin/spanledger trace {runaway.trace_id} --db {db}"
        "   (after Ctrl-C: the file is the server's while it runs)\n"
        f"                .venv/bin/spanledger report --url {url} --group-by model"
    )


if __name__ == "__main__":
    main()
