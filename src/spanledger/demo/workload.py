"""A realistic multi-agent workload, through the real OTel SDK and the real `openai` and
`anthropic` SDKs, against the bundled fake provider.

A supervisor agent plans with gpt-4o (a long, cached system prompt), delegates to a
research agent (web search, Claude with an explicitly cached prompt) and an execution
agent (CRM lookup, gpt-4o-mini), for several users in several departments. One call is
rate-limited and retried by the application; one research run gets stuck re-fetching the
same page until its budget's loop guard stops it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anthropic
import openai
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

import spanledger
from spanledger.sdk import Ledger

PLANNER_PROMPT = (
    "You are the supervisor of a team of agents at Acme. Break the user's request into "
    "research and execution steps, delegate them, and write the final answer. " * 60
)
RESEARCH_PROMPT = (
    "You are a research agent. Read the search results and summarise the facts that "
    "answer the question, citing sources. Never invent facts. " * 60
)
USERS = (
    ("alice", "research", "Compare our Q3 churn with industry benchmarks"),
    ("bob", "sales", "Draft a renewal offer for Globex"),
    ("carol", "support", "Why did ticket volume spike on Monday?"),
    ("dave", "finance", "Forecast LLM spend for next quarter"),
    ("erin", "research", "Summarise the latest papers on prompt caching"),
    ("frank", "sales", "Find upsell candidates among EU customers"),
)


@dataclass
class RunResult:
    user: str
    department: str
    trace_id: str
    stopped: str | None = None  # why a budget stopped the run
    spent_usd: str = "0"


@dataclass
class Workload:
    """The demo's agents, wired to a SpanLedger server and the fake provider."""

    spanledger_url: str
    provider_url: str
    rates: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider(
            resource=Resource.create(
                {"service.name": "assistant-api", "deployment.environment": "demo"}
            )
        )
        self.ledger: Ledger = spanledger.instrument(
            OTLPSpanExporter(endpoint=f"{self.spanledger_url}/v1/traces"),
            tracer_provider=self.tracer_provider,
            rates=self.rates,
        )
        # OpenLLMetry's OpenAI instrumentation records cached prompt tokens (openai-v2 2.4b0
        # does not for chat completions, which would price them as uncached).
        OpenAIInstrumentor().instrument(tracer_provider=self.tracer_provider)
        AnthropicInstrumentor().instrument(tracer_provider=self.tracer_provider)
        self.tracer = self.tracer_provider.get_tracer("acme.agents")
        self.openai = openai.OpenAI(
            base_url=f"{self.provider_url}/v1", api_key="demo", max_retries=0
        )
        self.claude = anthropic.Anthropic(base_url=self.provider_url, api_key="demo", max_retries=0)

    def close(self) -> None:
        self.ledger.force_flush()
        OpenAIInstrumentor().uninstrument()
        AnthropicInstrumentor().uninstrument()
        self.ledger.shutdown()

    # -- agents ----------------------------------------------------------------------------
    @contextmanager
    def agent(self, name: str) -> Iterator[trace.Span]:
        with self.tracer.start_as_current_span(
            f"invoke_agent {name}",
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name},
        ) as span:
            yield span

    @contextmanager
    def tool(self, name: str, arguments: dict[str, str]) -> Iterator[trace.Span]:
        with self.tracer.start_as_current_span(
            f"execute_tool {name}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.call.arguments": json.dumps(arguments, sort_keys=True),
            },
        ) as span:
            yield span

    def ask_gpt(self, model: str, system: str, question: str, *, fail: str | None = None) -> str:
        key = f"{model}:{abs(hash(question))}"  # one failure list per distinct question
        headers = {"x-fake-fail": fail, "x-fake-key": key} if fail else None
        response = self.openai.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
            extra_headers=headers,
        )
        return response.choices[0].message.content or ""

    def ask_gpt_retrying(self, model: str, system: str, question: str) -> str:
        """The application's own retry: the first attempt is rate-limited (429)."""
        for attempt in range(3):
            try:
                return self.ask_gpt(model, system, question, fail="429" if attempt == 0 else None)
            except openai.RateLimitError:
                continue
        raise RuntimeError("rate limited three times")

    def ask_claude(self, question: str, notes: str) -> str:
        message = self.claude.messages.create(
            model="claude-haiku-4-5",
            max_tokens=400,
            system=[
                {"type": "text", "text": RESEARCH_PROMPT, "cache_control": {"type": "ephemeral"}}
            ],
            messages=[{"role": "user", "content": f"{question}\n\nResults:\n{notes}"}],
        )
        return "".join(block.text for block in message.content if block.type == "text")

    def research(self, question: str, *, stuck: bool = False) -> str:
        with self.agent("research"):
            with self.tool("web_search", {"q": question}):
                notes = f"Ten results about {question}. " * 20
            if stuck:
                # A runaway loop: the agent keeps re-fetching the same page and asking the
                # model whether it has enough, until the budget's loop guard stops it.
                for attempt in range(50):
                    with self.tool("fetch_page", {"url": "https://example.com/benchmarks"}):
                        notes += f"Attempt {attempt}: the page did not load completely. " * 40
                    self.ask_gpt("gpt-4o", "Decide whether to fetch again.", notes)
            return self.ask_claude(question, notes)

    def execute(self, task: str, *, flaky: bool = False) -> str:
        with self.agent("execution"):
            with self.tool("crm_lookup", {"task": task}):
                records = f"CRM records for {task}. " * 10
            prompt = f"Act on: {task}\n{records}"
            if flaky:
                return self.ask_gpt_retrying("gpt-4o-mini", "You execute tasks.", prompt)
            return self.ask_gpt("gpt-4o-mini", "You execute tasks.", prompt)

    def run(self, user: str, department: str, request: str, *, stuck: bool = False,
            flaky: bool = False) -> RunResult:  # fmt: skip
        with (
            spanledger.attribute(user_id=user, department=department),
            spanledger.budget(max_usd=0.50, max_llm_calls=40, max_tool_repeats=12) as budget,
            self.tracer.start_as_current_span(
                "POST /v1/assist", attributes={"http.request.method": "POST"}
            ) as root,
        ):
            result = RunResult(user, department, format(root.get_span_context().trace_id, "032x"))
            try:
                with self.agent("supervisor"):
                    plan = self.ask_gpt("gpt-4o", PLANNER_PROMPT, request)
                    findings = self.research(request, stuck=stuck)
                    done = self.execute(f"{request}: {plan[:40]}", flaky=flaky)
                    self.ask_gpt("gpt-4o", PLANNER_PROMPT, f"{request}\n{findings}\n{done}")
            except spanledger.BudgetExceeded as stop:
                root.set_status(Status(StatusCode.ERROR, str(stop)))
                result.stopped = str(stop)
            result.spent_usd = format(budget.spent_usd, "f")
        return result

    def run_all(self) -> list[RunResult]:
        results = []
        for number, (user, department, request) in enumerate(USERS):
            results.append(self.run(user, department, request, flaky=number == 1))
        results.append(self.run("alice", "research", "Find every benchmark on churn", stuck=True))
        self.ledger.force_flush()
        return results


def main(argv: list[str] | None = None) -> None:
    """Run the workload once and print its results as JSON (tests run it in a process of
    its own: the instrumentations patch the SDKs for the whole process)."""
    import argparse
    import dataclasses

    parser = argparse.ArgumentParser(prog="python -m spanledger.demo.workload")
    parser.add_argument("spanledger_url")
    parser.add_argument("provider_url")
    parser.add_argument("--rates", action="append", default=[])
    args = parser.parse_args(argv)
    workload = Workload(args.spanledger_url, args.provider_url, rates=args.rates)
    try:
        results = workload.run_all()
    finally:
        workload.close()
    print(json.dumps([dataclasses.asdict(result) for result in results]))


if __name__ == "__main__":
    main()
