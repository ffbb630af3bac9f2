"""Every span attribute name SpanLedger reads or writes, in one place.

Names we *read* come from the OpenTelemetry GenAI semantic conventions and the
instrumentation dialects that predate or diverge from them (see `usage.DIALECTS`).
Names we *write* live under the `spanledger.` namespace.
"""

from typing import Final

# --- OpenTelemetry GenAI (current semantic conventions) --------------------------------
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # older name of gen_ai.provider.name
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_CACHED: Final = "gen_ai.response.cached"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: Final = (
    "gen_ai.usage.cache_write.input_tokens"  # anthropic SDK
)
ANTHROPIC_CACHE_WRITE_1H_INPUT_TOKENS: Final = (
    "anthropic.usage.cache_creation.ephemeral_1h_input_tokens"  # the anthropic SDK's tracing
)
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
ERROR_TYPE: Final = "error.type"
SESSION_ID: Final = "session.id"
USER_ID: Final = "user.id"
ENDUSER_ID: Final = "enduser.id"
SERVICE_NAME: Final = "service.name"
TELEMETRY_SDK_NAME: Final = "telemetry.sdk.name"

# Operations that organise work rather than call a model (no usage of their own).
AGENT_OPERATIONS: Final = frozenset({"invoke_agent", "create_agent", "execute_tool"})

# HTTP attempts (sdk/attempts.py writes them; traces.py reads them to find retries).
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_REQUEST_METHOD_ORIGINAL: Final = "http.request.method_original"
HTTP_REQUEST_RESEND_COUNT: Final = "http.request.resend_count"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_FULL: Final = "url.full"
ATTEMPT: Final = "spanledger.attempt"  # 1 for a request's first attempt, 2 for its retry...

# --- OpenLLMetry / Traceloop ------------------------------------------------------------
OPENLLMETRY_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
OPENLLMETRY_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
OPENLLMETRY_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read_input_tokens"
OPENLLMETRY_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation_input_tokens"
OPENLLMETRY_REASONING_TOKENS: Final = "gen_ai.usage.reasoning_tokens"
OPENLLMETRY_TOTAL_TOKENS: Final = "llm.usage.total_tokens"
TRACELOOP_ENTITY_NAME: Final = "traceloop.entity.name"
TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"
TRACELOOP_USER_ID: Final = "traceloop.association.properties.user_id"
TRACELOOP_REQUEST_TYPE: Final = "llm.request.type"

# --- OpenInference (Arize Phoenix) ------------------------------------------------------
OPENINFERENCE_PROMPT: Final = "llm.token_count.prompt"
OPENINFERENCE_COMPLETION: Final = "llm.token_count.completion"
OPENINFERENCE_TOTAL: Final = "llm.token_count.total"
OPENINFERENCE_CACHE_READ: Final = "llm.token_count.prompt_details.cache_read"
OPENINFERENCE_CACHE_WRITE: Final = "llm.token_count.prompt_details.cache_write"
OPENINFERENCE_REASONING: Final = "llm.token_count.completion_details.reasoning"
OPENINFERENCE_MODEL_NAME: Final = "llm.model_name"
OPENINFERENCE_PROVIDER: Final = "llm.provider"
OPENINFERENCE_SYSTEM: Final = "llm.system"
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"

# --- Vercel AI SDK ----------------------------------------------------------------------
VERCEL_INPUT_TOKENS: Final = "ai.usage.inputTokens"
VERCEL_OUTPUT_TOKENS: Final = "ai.usage.outputTokens"
VERCEL_CACHED_INPUT_TOKENS: Final = "ai.usage.cachedInputTokens"
VERCEL_REASONING_TOKENS: Final = "ai.usage.reasoningTokens"
VERCEL_PROMPT_TOKENS: Final = "ai.usage.promptTokens"  # AI SDK <= 4
VERCEL_COMPLETION_TOKENS: Final = "ai.usage.completionTokens"  # AI SDK <= 4
VERCEL_MODEL_ID: Final = "ai.model.id"
VERCEL_MODEL_PROVIDER: Final = "ai.model.provider"
VERCEL_TELEMETRY_USER: Final = "ai.telemetry.metadata.userId"

# --- OpenLIT ----------------------------------------------------------------------------
OPENLIT_SDK_NAME: Final = "openlit"  # value of telemetry.sdk.name on OpenLIT resources
OPENLIT_TOTAL_TOKENS: Final = "gen_ai.usage.total_tokens"

# --- Costs recorded by the caller (kept as `reported`, never overwritten) ---------------
REPORTED_COST_KEYS: Final = (
    "gen_ai.usage.cost",  # OpenLIT
    "llm.cost.total",  # OpenInference
    "operation.cost",  # Langfuse
    "spanledger.cost.usd",  # a span we already priced upstream (SDK → server)
)

# --- Attributes SpanLedger writes -------------------------------------------------------
COST_USD: Final = "spanledger.cost.usd"
COST_INPUT_USD: Final = "spanledger.cost.input_usd"
COST_OUTPUT_USD: Final = "spanledger.cost.output_usd"
COST_CACHE_READ_USD: Final = "spanledger.cost.cache_read_usd"
COST_CACHE_WRITE_USD: Final = "spanledger.cost.cache_write_usd"
COST_SAVED_BY_CACHE_USD: Final = "spanledger.cost.saved_by_cache_usd"
COST_REPORTED_USD: Final = "spanledger.cost.reported_usd"
COST_ROLLUP_USD: Final = "spanledger.cost.rollup_usd"
CACHE_STATUS: Final = "spanledger.cache.status"
PRICE_STATUS: Final = "spanledger.price.status"
PRICE_MODEL: Final = "spanledger.price.model"
PRICE_SOURCE: Final = "spanledger.price.source"
PRICE_REASON: Final = "spanledger.price.reason"
USAGE_SOURCE: Final = "spanledger.usage.source"
BUDGET_REFUSED: Final = "spanledger.budget.refused"  # why a call was refused before it was sent
BUDGET_NAME: Final = "spanledger.budget.name"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"

# Dimensions set in-process by `spanledger.attribute(...)`: keyword -> attribute key. They
# travel to other services as W3C baggage under the same keys.
ATTRIBUTION_KEYWORDS: Final[dict[str, str]] = {
    "user_id": USER_ID,
    "department": "spanledger.department",
    "tenant": "spanledger.tenant",
    "agent": "spanledger.agent",
    "conversation": GEN_AI_CONVERSATION_ID,
}

# Attribution dimensions: canonical name -> attribute keys, first present wins.
# A span without a dimension inherits it from its nearest ancestor (see traces.py).
DEFAULT_DIMENSIONS: Final[dict[str, tuple[str, ...]]] = {
    "user": (
        USER_ID,
        ENDUSER_ID,
        "spanledger.user",
        "langfuse.user.id",
        TRACELOOP_USER_ID,
        VERCEL_TELEMETRY_USER,
        "user_id",
    ),
    "department": ("spanledger.department", "department", "team", "org.department"),
    "tenant": ("spanledger.tenant", "tenant.id", "tenant_id", "organization.id"),
    "agent": (GEN_AI_AGENT_NAME, "spanledger.agent", "agent.name"),
    "conversation": (GEN_AI_CONVERSATION_ID, SESSION_ID, "langfuse.session.id"),
    "service": (SERVICE_NAME,),
}
