"""Server side of SpanLedger: OTLP decoding, receivers, ingest, forwarding, HTTP API."""
