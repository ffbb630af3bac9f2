"""SpanLedger: the cost of every span of an LLM application's OpenTelemetry traces."""

__version__ = "0.1.0"
