"""Demo and test helpers: a local fake LLM provider that the real SDKs talk to."""
