/* SpanLedger dashboard: plain JavaScript, no build step; it talks only to the JSON API.
 *
 * Safety rule: data never becomes markup. Every string from the API enters the page via
 * textContent, a text node or an attribute set with setAttribute (see `el`), so a span
 * named `<img src=x onerror=alert(1)>` shows up as those characters.
 *
 * Money rule: the API sends exact decimal strings. They are rounded for display here
 * (formatUsd) and summed, where the page must, as BigInt femto-dollars (never floats).
 */
"use strict";

(function () {
  const TOKEN_KEY = "spanledger.token";
  const REFRESH_MS = 5000;
  const DIMENSIONS = ["user", "department", "agent", "model", "provider", "service"];
  const URL_ONLY_DIMENSIONS = ["tenant", "conversation"]; // honoured in links, no select
  const RANGES = [
    ["15m", "Last 15 minutes", 15 * 60],
    ["1h", "Last hour", 3600],
    ["6h", "Last 6 hours", 6 * 3600],
    ["24h", "Last 24 hours", 24 * 3600],
    ["7d", "Last 7 days", 7 * 86400],
    ["30d", "Last 30 days", 30 * 86400],
    ["all", "All time", null],
    ["custom", "Custom (UTC)…", null],
  ];
  const DEFAULT_RANGE = "all";
  const BREAKDOWNS = [
    ["model", "By model"],
    ["provider", "By provider"],
    ["agent", "By agent"],
    ["user", "By user"],
    ["department", "By department"],
    ["service", "By service"],
  ];
  const FEMTO_DIGITS = 15;

  const view = document.getElementById("view");
  const filtersForm = document.getElementById("filters");
  const statusBox = document.getElementById("status");
  const forgetButton = document.getElementById("forget-token");

  let timer = null;
  let generation = 0; // bumps on every navigation; stale responses are dropped
  let chart = null;
  let chartPoints = [];

  // ---------------------------------------------------------------------------------
  // DOM: build elements from data without ever parsing it as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ---------------------------------------------------------------------------------
  // Money and numbers.
  function parseDecimal(text) {
    const match = /^(-?)(\d*)(?:\.(\d*))?$/.exec(String(text ?? "0").trim());
    if (!match) return null;
    return { negative: match[1] === "-", whole: match[2] || "0", fraction: match[3] || "" };
  }

  /** "$0.0058" from "0.005839944": 2 places from $1, 4 from 1¢, else 6; half up. */
  function formatUsd(text) {
    const number = parseDecimal(text);
    if (number === null) return String(text);
    const whole = number.whole.replace(/^0+(?=\d)/, "");
    let places = 6;
    if (whole !== "0") places = 2;
    else if (/[1-9]/.test(number.fraction.slice(0, 2))) places = 4;
    const digits = whole + number.fraction.padEnd(places + 1, "0");
    const kept = BigInt(digits.slice(0, whole.length + places));
    const rounded = kept + (Number(digits[whole.length + places]) >= 5 ? 1n : 0n);
    const isZero = !/[1-9]/.test(whole + number.fraction);
    if (isZero) return "$0.00";
    if (rounded === 0n) return (number.negative ? "-" : "") + "<$" + tiny(places);
    const padded = rounded.toString().padStart(places + 1, "0");
    const intPart = padded.slice(0, padded.length - places);
    const sign = number.negative ? "-" : "";
    return sign + "$" + groupThousands(intPart) + "." + padded.slice(padded.length - places);
  }

  function tiny(places) {
    return "0." + "0".repeat(places - 1) + "1";
  }

  function groupThousands(digits) {
    return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function toFemto(text) {
    const number = parseDecimal(text);
    if (number === null) return 0n;
    const value = BigInt(number.whole + number.fraction.padEnd(FEMTO_DIGITS, "0").slice(0, FEMTO_DIGITS));
    return number.negative ? -value : value;
  }

  function fromFemto(value) {
    const negative = value < 0n;
    const digits = (negative ? -value : value).toString().padStart(FEMTO_DIGITS + 1, "0");
    const whole = digits.slice(0, digits.length - FEMTO_DIGITS);
    const fraction = digits.slice(digits.length - FEMTO_DIGITS).replace(/0+$/, "");
    return (negative ? "-" : "") + whole + (fraction ? "." + fraction : "");
  }

  /** A money cell: rounded text, exact value in data-usd and the tooltip. */
  function money(text, attrs) {
    return el("span", Object.assign({ class: "money", "data-usd": text, title: `$${text} exactly`, text: formatUsd(text) }, attrs || {}));
  }

  function formatInt(value) {
    return groupThousands(String(Math.round(Number(value) || 0)));
  }

  function compact(value) {
    const n = Number(value) || 0;
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "B";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
    return formatInt(n);
  }

  function plural(count, noun) {
    return `${formatInt(count)} ${noun}${Number(count) === 1 ? "" : "s"}`;
  }

  function percent(part, whole, places) {
    if (!whole) return "—";
    return ((100 * part) / whole).toFixed(places ?? 1) + "%";
  }

  function ratio(text, totalText) {
    const total = Number(totalText);
    if (!(total > 0)) return 0;
    return Math.max(0, Math.min(1, Number(text) / total)); // a bar's width, display only
  }

  function formatTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    return date.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function duration(startIso, endIso) {
    const ms = Date.parse(endIso) - Date.parse(startIso);
    if (!Number.isFinite(ms) || ms < 0) return "";
    if (ms < 1000) return ms.toFixed(0) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
    return (ms / 60000).toFixed(1) + " min";
  }

  // ---------------------------------------------------------------------------------
  // Routing: everything lives in the hash, so a link is the whole view.
  //   #/?range=24h&user=alice            the overview, filtered
  //   #/trace/<32 hex>?range=24h&...     one trace (filters kept for the way back)
  function currentRoute() {
    let path = location.hash.replace(/^#/, "") || "/";
    const pathMatch = /^\/trace\/([0-9a-fA-F]{32})\/?$/.exec(location.pathname);
    if (pathMatch && !location.hash) path = "/trace/" + pathMatch[1];
    const cut = path.indexOf("?");
    const params = new URLSearchParams(cut >= 0 ? path.slice(cut + 1) : "");
    path = cut >= 0 ? path.slice(0, cut) : path;
    const trace = /^\/trace\/([0-9a-fA-F]{32})$/.exec(path);
    if (trace) return { view: "trace", traceId: trace[1].toLowerCase(), params };
    return { view: "overview", params };
  }

  function filterParams(params) {
    const kept = new URLSearchParams();
    for (const name of ["range", "from", "to", ...DIMENSIONS, ...URL_ONLY_DIMENSIONS]) {
      const value = params.get(name);
      if (value) kept.set(name, value);
    }
    return kept;
  }

  function overviewHref(params) {
    const query = filterParams(params).toString();
    return "#/" + (query ? "?" + query : "");
  }

  function traceHref(traceId, params) {
    const query = filterParams(params).toString();
    return "#/trace/" + encodeURIComponent(traceId) + (query ? "?" + query : "");
  }

  function withFilter(params, name, value) {
    const next = filterParams(params);
    if (value === null || value === undefined || value === "") next.delete(name);
    else next.set(name, value);
    return next;
  }

  /** URL filters -> API query: `from`/`to` in ISO UTC, dimensions as they are. */
  function apiQuery(params) {
    const query = new URLSearchParams();
    const range = params.get("range") || DEFAULT_RANGE;
    const preset = RANGES.find(([key]) => key === range);
    if (range === "custom") {
      for (const name of ["from", "to"]) {
        const value = params.get(name);
        if (value) query.set(name, asUtc(value));
      }
    } else if (preset && preset[2]) {
      query.set("from", new Date(Date.now() - preset[2] * 1000).toISOString());
    }
    for (const name of [...DIMENSIONS, ...URL_ONLY_DIMENSIONS]) {
      const value = params.get(name);
      if (value) query.set(name, value);
    }
    return query;
  }

  function asUtc(value) {
    return /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : value + "Z";
  }

  // ---------------------------------------------------------------------------------
  // The API, with the bearer token from this tab's session.
  class AuthRequired extends Error {}
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, query) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const qs = query && query.toString();
    let response;
    try {
      response = await fetch(path + (qs ? "?" + qs : ""), { headers, cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, "the server cannot be reached");
    }
    if (response.status === 401) throw new AuthRequired(token ? "rejected" : "required");
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, (body && body.error) || `HTTP ${response.status}`);
    }
    return body;
  }

  function updateTokenButton() {
    forgetButton.hidden = !sessionStorage.getItem(TOKEN_KEY);
  }

  forgetButton.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    updateTokenButton();
    route();
  });

  function showTokenForm(reason) {
    stopTimer();
    destroyChart();
    filtersForm.hidden = true;
    setStatus("locked", "Token required");
    const input = el("input", {
      id: "token-input",
      type: "password",
      name: "token",
      autocomplete: "current-password",
      required: true,
      spellcheck: "false",
    });
    const form = el(
      "form",
      { class: "token-form card", "data-testid": "token-form" },
      el("h1", { text: "This SpanLedger server needs a token" }),
      el("p", { class: "muted", text: "Enter the bearer token the server was started with. It is kept only in this browser tab." }),
      el("label", { for: "token-input", text: "Access token" }),
      input,
      reason === "rejected" ? el("p", { class: "form-error", role: "alert", text: "The server refused that token. Check it and try again." }) : null,
      el("button", { type: "submit", class: "primary", text: "Open dashboard" })
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      updateTokenButton();
      route();
    });
    view.replaceChildren(form);
    input.focus();
  }

  // ---------------------------------------------------------------------------------
  // Status line and the live timer.
  function setStatus(kind, text) {
    statusBox.replaceChildren(el("span", { class: "dot dot-" + kind, "aria-hidden": "true" }), el("span", { text }));
    statusBox.dataset.state = kind;
  }

  function stopTimer() {
    if (timer !== null) clearTimeout(timer.handle);
    timer = null;
  }

  /** Call `refresh` every REFRESH_MS while the tab is visible, until the next navigation. */
  function schedule(refresh) {
    stopTimer();
    const mine = { handle: 0 };
    const tick = async () => {
      if (!document.hidden) await refresh();
      if (timer === mine) mine.handle = setTimeout(tick, REFRESH_MS);
    };
    mine.handle = setTimeout(tick, REFRESH_MS);
    timer = mine;
  }

  function handleError(error, where) {
    if (error instanceof AuthRequired) {
      if (error.message === "rejected") sessionStorage.removeItem(TOKEN_KEY);
      updateTokenButton();
      showTokenForm(error.message);
      return;
    }
    setStatus("error", (error.status ? "Error: " : "Offline: ") + error.message);
    if (where) where.replaceChildren(el("div", { class: "notice notice-error", role: "alert", text: `Could not load: ${error.message}` }));
  }

  // ---------------------------------------------------------------------------------
  // Filters bar.
  async function renderFilters(params) {
    filtersForm.hidden = false;
    const range = params.get("range") || DEFAULT_RANGE;
    // The selects offer the values seen in the time range (fetched on every navigation,
    // so users and models that appeared since show up).
    const rangeQuery = new URLSearchParams();
    const full = apiQuery(params);
    for (const name of ["from", "to"]) if (full.get(name)) rangeQuery.set(name, full.get(name));
    let dimensionValues = {};
    try {
      dimensionValues = await api("api/dimensions", rangeQuery);
    } catch (error) {
      if (error instanceof AuthRequired) throw error;
    }
    const controls = [];
    const rangeSelect = el("select", { id: "filter-range", name: "range", "aria-label": "Time range" });
    for (const [value, label] of RANGES) {
      rangeSelect.append(el("option", { value, text: label, selected: value === range }));
    }
    controls.push(el("label", { class: "filter" }, el("span", { text: "Time" }), rangeSelect));
    if (range === "custom") {
      for (const name of ["from", "to"]) {
        controls.push(
          el("label", { class: "filter" }, el("span", { text: name === "from" ? "From (UTC)" : "To (UTC)" }),
            el("input", { type: "datetime-local", name, id: "filter-" + name, value: (params.get(name) || "").replace(/Z$/, "").slice(0, 16) }))
        );
      }
    }
    for (const name of DIMENSIONS) {
      const select = el("select", { id: "filter-" + name, name, "aria-label": name });
      const current = params.get(name) || "";
      select.append(el("option", { value: "", text: "All" }));
      const values = dimensionValues[name] || [];
      const seen = new Set();
      for (const row of values) {
        if (row.value === null || row.value === undefined) continue;
        seen.add(row.value);
        select.append(el("option", { value: row.value, text: row.value, selected: row.value === current }));
      }
      if (current && !seen.has(current)) select.append(el("option", { value: current, text: current, selected: true }));
      controls.push(el("label", { class: "filter" + (current ? " active" : "") }, el("span", { text: name[0].toUpperCase() + name.slice(1) }), select));
    }
    for (const name of URL_ONLY_DIMENSIONS) {
      const value = params.get(name);
      if (value) {
        controls.push(el("span", { class: "chip url-filter", title: "set by the link" },
          el("span", { class: "chip-key", text: name }), el("span", { text: value }),
          el("a", { href: overviewHref(withFilter(params, name, null)), "aria-label": `Remove the ${name} filter`, text: "×" })));
      }
    }
    const active = DIMENSIONS.some((name) => params.get(name)) || URL_ONLY_DIMENSIONS.some((name) => params.get(name));
    controls.push(el("a", { class: "clear" + (active ? "" : " hidden"), href: overviewHref(withRangeOnly(params)), text: "Clear filters" }));
    filtersForm.replaceChildren(...controls);
  }

  function withRangeOnly(params) {
    const next = new URLSearchParams();
    for (const name of ["range", "from", "to"]) if (params.get(name)) next.set(name, params.get(name));
    return next;
  }

  filtersForm.addEventListener("change", () => {
    const route = currentRoute();
    const next = new URLSearchParams();
    const data = new FormData(filtersForm);
    for (const [name, value] of data.entries()) {
      if (value) next.set(name, name === "from" || name === "to" ? value + "Z" : value);
    }
    for (const name of URL_ONLY_DIMENSIONS) if (route.params.get(name)) next.set(name, route.params.get(name));
    if (next.get("range") === DEFAULT_RANGE) next.delete("range");
    if (next.get("range") !== "custom") {
      next.delete("from");
      next.delete("to");
    }
    location.hash = overviewHref(next).slice(1); // filters apply to the overview
  });
  filtersForm.addEventListener("submit", (event) => event.preventDefault());

  // ---------------------------------------------------------------------------------
  // Overview.
  function renderOverviewFrame() {
    destroyChart();
    const frame = {
      notice: el("div", { class: "notice notice-error", role: "alert", hidden: true }),
      kpis: el("section", { class: "kpis", "aria-label": "Totals" }),
      chart: el("div", { class: "chart", id: "spend-chart" }),
      chartNote: el("span", { class: "muted small" }),
      readout: el("div", { class: "readout muted small", "data-testid": "chart-readout" }),
      alerts: el("div", { class: "alerts", "data-testid": "alerts" }, el("p", { class: "muted", text: "Loading…" })),
      breakdowns: el("section", { class: "breakdowns", "aria-label": "Spend by dimension" }),
      traces: el("div", { class: "table-wrap" }),
      unpriced: el("div", { class: "table-wrap" }),
    };
    view.replaceChildren(
      frame.notice,
      frame.kpis,
      el(
        "section",
        { class: "row two" },
        el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", { text: "Spend over time" }), frame.chartNote), frame.chart, frame.readout),
        el("div", { class: "card" }, el("div", { class: "card-head" }, el("h2", { text: "Active alerts" })), frame.alerts)
      ),
      frame.breakdowns,
      el("section", { class: "card" }, el("div", { class: "card-head" }, el("h2", { text: "Most expensive traces" })), frame.traces),
      el("section", { class: "card", "data-testid": "unpriced" }, el("div", { class: "card-head" }, el("h2", { text: "Unpriced models" }), el("span", { class: "muted small", text: "calls SpanLedger has no price for — never counted as $0" })), frame.unpriced)
    );
    return frame;
  }

  async function showOverview(route, token) {
    const frame = renderOverviewFrame();
    await renderFilters(route.params);
    const refresh = async () => {
      try {
        const data = await api("api/overview", apiQuery(route.params));
        if (token !== generation) return;
        renderKpis(frame.kpis, data.summary);
        renderChart(frame, data.series);
        renderBreakdowns(frame.breakdowns, data.breakdown, data.summary, route.params);
        renderTopTraces(frame.traces, data.top_traces, route.params);
        renderUnpriced(frame.unpriced, data.unpriced);
        frame.notice.hidden = true;
        setStatus("live", "Live · updated " + formatTime(data.generated_at).slice(11));
      } catch (error) {
        if (token !== generation) return;
        handleError(error);
        if (error instanceof AuthRequired) return;
        frame.notice.textContent = error.status === 400 ? `These filters do not work: ${error.message}` : `Could not refresh: ${error.message}`;
        frame.notice.hidden = false;
      }
      await refreshAlerts(frame.alerts, token);
    };
    await refresh();
    if (token === generation && !(view.querySelector("[data-testid=token-form]"))) schedule(refresh);
  }

  function kpi(testid, label, value, sub, tone) {
    return el("div", { class: "kpi" + (tone ? " kpi-" + tone : ""), "data-testid": testid },
      el("div", { class: "kpi-label", text: label }),
      el("div", { class: "kpi-value" }, value),
      el("div", { class: "kpi-sub" }, sub));
  }

  function renderKpis(box, s) {
    const hitRate = percent(s.cache_read_tokens, s.input_tokens);
    const tokens = Number(s.input_tokens) + Number(s.output_tokens);
    box.replaceChildren(
      kpi("total-spend", "Total spend", money(s.cost, { class: "money big" }),
        `${plural(s.calls, "LLM call")} in ${plural(s.traces, "trace")}`),
      kpi("tokens", "Tokens", el("span", { text: compact(tokens), title: formatInt(tokens) + " tokens" }),
        `${compact(s.input_tokens)} in · ${compact(s.output_tokens)} out`),
      kpi("cache", "Cache hit rate", el("span", { text: hitRate, title: "share of input tokens read from the provider's cache" }),
        ["saved ", money(s.saved_by_cache, { "data-testid": "cache-saved" }), ` · ${formatInt(s.cache_hit_calls)} of ${formatInt(s.calls)} calls hit`], "good"),
      kpi("retries", "Retry overhead", money(s.retry_overhead), `${plural(s.retries, "failed attempt")} retried`,
        s.retries ? "warn" : null),
      kpi("loops", "Runaway loops", money(s.loop_cost),
        s.loop_traces ? `in ${plural(s.loop_traces, "trace")} · ${plural(s.loop_spans, "repeated span")}` : "none detected",
        s.loop_traces ? "bad" : null),
      kpi("unpriced-calls", "Unpriced calls", el("span", { text: formatInt(s.unpriced_calls) }),
        s.unpriced_calls ? "no price known: see below" : "every call has a price", s.unpriced_calls ? "warn" : null)
    );
  }

  // Spend over time (uPlot): bars per UTC bucket; the readout shows the exact API amount.
  function renderChart(frame, series) {
    chartPoints = series.points || [];
    frame.chartNote.textContent = `per ${series.step} (UTC) · refreshes every ${REFRESH_MS / 1000} s`;
    if (!chartPoints.length || typeof uPlot === "undefined") {
      destroyChart();
      frame.chart.replaceChildren(el("p", { class: "empty", text: chartPoints.length ? "Chart library not loaded." : "No LLM calls in this range yet." }));
      return;
    }
    const data = [
      chartPoints.map((point) => Date.parse(point.t) / 1000),
      chartPoints.map((point) => Number(point.cost)), // plotted only; totals come exact from the API
    ];
    if (chart && chart.root.isConnected && chart.root.parentNode === frame.chart) {
      chart.setData(data);
      showReadout(frame.readout, chart.cursor.idx);
      return;
    }
    showReadout(frame.readout, null);
    destroyChart();
    frame.chart.replaceChildren();
    const width = Math.max(320, frame.chart.clientWidth || 640);
    chart = new uPlot(
      {
        width,
        height: 240,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        legend: { show: false },
        hooks: { setCursor: [(u) => showReadout(frame.readout, u.cursor.idx)] },
        cursor: { points: { show: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
        axes: [
          { stroke: "#656d76", grid: { stroke: "#eef0f3" }, ticks: { stroke: "#d0d7de" } },
          {
            stroke: "#656d76", size: 80, grid: { stroke: "#eef0f3" }, ticks: { stroke: "#d0d7de" },
            values: (u, ticks) => ticks.map((tick) => "$" + axisNumber(tick)),
          },
        ],
        series: [
          {},
          {
            label: "Spend",
            stroke: "#4263eb",
            fill: "rgba(66, 99, 235, 0.55)",
            width: 1,
            paths: uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 48], gap: 1 }) : undefined,
            points: { show: false },
          },
        ],
      },
      data,
      frame.chart
    );
  }

  /** Under the chart: the bucket under the cursor, with the exact API amount. */
  function showReadout(box, index) {
    const point = index === null || index === undefined ? null : chartPoints[index];
    if (!point) {
      box.textContent = "Point at a bar for its spend.";
      return;
    }
    const when = new Date(point.t).toISOString().replace("T", " ").slice(0, 16) + " UTC";
    box.replaceChildren(el("strong", { text: when }), " · ", money(point.cost), ` · ${plural(point.calls, "LLM call")}`,
      point.unpriced_calls ? ` (${point.unpriced_calls} unpriced)` : "");
  }

  function axisNumber(value) {
    if (value === 0) return "0";
    if (Math.abs(value) >= 100) return value.toFixed(0);
    if (Math.abs(value) >= 1) return value.toFixed(2);
    return value.toPrecision(2).replace(/0+$/, "").replace(/\.$/, "");
  }

  function destroyChart() {
    if (chart) chart.destroy();
    chart = null;
  }

  window.addEventListener("resize", () => {
    if (chart && chart.root.parentNode) chart.setSize({ width: Math.max(320, chart.root.parentNode.clientWidth), height: 240 });
  });

  function renderBreakdowns(box, breakdown, summary, params) {
    const cards = BREAKDOWNS.map(([name, title]) => {
      const block = breakdown[name] || { rows: [] };
      const table = el("table", { class: "bars" });
      const body = el("tbody");
      for (const row of block.rows) {
        const value = row[name];
        const label = value === null || value === undefined
          ? el("span", { class: "muted", text: "(none)" })
          : el("a", { href: overviewHref(withFilter(params, name, value)), text: value, title: `Show only ${name} ${value}` });
        const unpricedAll = row.unpriced_calls > 0 && row.unpriced_calls === row.calls;
        const amount = unpricedAll
          ? el("span", { class: "badge badge-warn", text: "unpriced", title: `${formatInt(row.calls)} calls, ${formatInt(Number(row.input_tokens) + Number(row.output_tokens))} tokens without a price` })
          : [money(row.cost), row.unpriced_calls ? el("span", { class: "badge badge-warn extra", text: `+${row.unpriced_calls} unpriced`, title: "calls without a price are not in this amount" }) : null];
        const tr = el("tr", { "data-key": value ?? "" },
          el("th", { scope: "row", class: "label" }, label),
          el("td", { class: "bar-cell" }, el("div", { class: "track" }, el("div", { class: "fill", style: `width:${(ratio(row.cost, summary.cost) * 100).toFixed(2)}%` }))),
          el("td", { class: "amount" }, amount),
          el("td", { class: "share", text: unpricedAll ? `${compact(Number(row.input_tokens) + Number(row.output_tokens))} tok` : percent(Number(row.share), 1) })
        );
        body.append(tr);
      }
      if (block.more) {
        body.append(el("tr", { class: "more" },
          el("th", { scope: "row", class: "label muted", text: `+ ${block.more.rows} more` }),
          el("td", { class: "bar-cell" }),
          el("td", { class: "amount" }, money(block.more.cost)),
          el("td", { class: "share", text: percent(Number(block.more.share), 1) })));
      }
      if (!block.rows.length) body.append(el("tr", {}, el("td", { colspan: 4, class: "empty", text: "No LLM calls in this range." })));
      table.append(body);
      return el("div", { class: "card breakdown", "data-breakdown": name }, el("div", { class: "card-head" }, el("h2", { text: title })), table);
    });
    box.replaceChildren(...cards);
  }

  function flags(trace) {
    const out = [];
    if (trace.loops) out.push(el("span", { class: "badge badge-bad", text: `loop ×${trace.loops}`, title: `loop cost $${trace.loop_cost}` }));
    if (Number(trace.retry_overhead) > 0) out.push(el("span", { class: "badge badge-warn", text: "retry" }));
    if (trace.unpriced) out.push(el("span", { class: "badge badge-warn", text: `${trace.unpriced} unpriced` }));
    if (!trace.complete) out.push(el("span", { class: "badge", text: "incomplete", title: "some spans' parents never arrived" }));
    return out;
  }

  function renderTopTraces(box, traces, params) {
    if (!traces.length) {
      box.replaceChildren(el("p", { class: "empty", text: "No finalized traces in this range yet." }));
      return;
    }
    const body = el("tbody");
    for (const trace of traces) {
      body.append(el("tr", { "data-trace": trace.trace_id, class: trace.loops ? "row-loop" : null },
        el("td", { class: "amount" }, money(trace.cost)),
        el("td", {}, el("a", { class: "trace-link", href: traceHref(trace.trace_id, params), text: trace.root_name || "(no root span)" }),
          el("div", { class: "mono muted small", text: trace.trace_id })),
        el("td", { text: trace.user_id || "—" }),
        el("td", { text: trace.department || "—" }),
        el("td", { text: (trace.agents || []).join(", ") || "—" }),
        el("td", { class: "num", text: formatInt(trace.llm_calls) }),
        el("td", { class: "nowrap", text: formatTime(trace.start_time) }),
        el("td", {}, flags(trace))));
    }
    box.replaceChildren(el("table", { class: "grid", "data-testid": "top-traces" },
      el("thead", {}, el("tr", {}, ...["Cost", "Trace", "User", "Department", "Agents", "LLM calls", "Started", ""].map((text) => el("th", { scope: "col", text })))),
      body));
  }

  function renderUnpriced(box, models) {
    if (!models.length) {
      box.replaceChildren(el("p", { class: "empty ok", text: "✓ Every model in this range has a price." }));
      return;
    }
    const body = el("tbody");
    for (const row of models) {
      body.append(el("tr", { "data-model": row.model },
        el("td", {}, el("span", { class: "mono", text: row.model }), " ", el("span", { class: "badge badge-warn", text: row.price_status === "reported_only" ? "reported cost only" : "unpriced" })),
        el("td", { text: row.provider || "—" }),
        el("td", { class: "num", text: formatInt(row.spans) }),
        el("td", { class: "num", "data-col": "input_tokens", text: formatInt(row.input_tokens) }),
        el("td", { class: "num", "data-col": "output_tokens", text: formatInt(row.output_tokens) }),
        el("td", { class: "muted", text: row.reason || "" }),
        el("td", { class: "nowrap", text: formatTime(row.last_seen) })));
    }
    box.replaceChildren(el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ...["Model", "Provider", "Calls", "Input tokens", "Output tokens", "Why", "Last seen"].map((text) => el("th", { scope: "col", text })))),
      body));
  }

  async function refreshAlerts(box, token) {
    try {
      const data = await api("api/alerts");
      if (token !== generation) return;
      const alerts = Array.isArray(data) ? data : (data && (data.alerts || data.active)) || [];
      if (!alerts.length) {
        box.replaceChildren(el("p", { class: "empty ok", text: "✓ No active alerts." }));
        return;
      }
      box.replaceChildren(el("ul", { class: "alert-list" }, alerts.map(alertItem)));
    } catch (error) {
      if (token !== generation) return;
      if (error instanceof ApiError && error.status === 404) {
        box.replaceChildren(el("p", { class: "empty", text: "Alerts not configured." }),
          el("p", { class: "muted small", text: "Add alert rules to the server's configuration to see budget and spend-rate alerts here." }));
      } else if (!(error instanceof AuthRequired)) {
        box.replaceChildren(el("p", { class: "notice notice-error", text: "Alerts unavailable: " + error.message }));
      }
    }
  }

  function alertItem(alert) {
    if (typeof alert !== "object" || alert === null) return el("li", { class: "alert-item", text: String(alert) });
    const title = alert.rule || alert.name || alert.title || alert.id || "alert";
    const message = alert.message || alert.summary || alert.description || "";
    const severity = String(alert.severity || alert.level || "warning");
    const since = alert.since || alert.started_at || alert.fired_at || alert.at;
    const shown = new Set(["rule", "name", "title", "id", "message", "summary", "description", "severity", "level", "since", "started_at", "fired_at", "at"]);
    const details = Object.entries(alert).filter(([key, value]) => !shown.has(key) && (typeof value !== "object" || value === null));
    return el("li", { class: "alert-item sev-" + severity.replace(/[^a-z]/gi, "").toLowerCase() },
      el("div", { class: "alert-title" }, el("span", { class: "badge badge-bad", text: severity }), " ", el("strong", { text: String(title) })),
      message ? el("div", { text: String(message) }) : null,
      details.length ? el("div", { class: "muted small", text: details.map(([key, value]) => `${key}: ${value}`).join(" · ") }) : null,
      since ? el("div", { class: "muted small", text: "since " + formatTime(since) }) : null);
  }

  // ---------------------------------------------------------------------------------
  // Trace view.
  async function showTrace(route, token) {
    destroyChart();
    filtersForm.hidden = true; // filters select traces on the overview; the way back keeps them
    view.replaceChildren(el("p", { class: "muted", text: "Loading trace…" }));
    const load = async () => {
      let data;
      try {
        data = await api("api/traces/" + encodeURIComponent(route.traceId));
      } catch (error) {
        if (token !== generation) return false;
        if (error instanceof ApiError && error.status === 404) {
          view.replaceChildren(backLink(route.params), el("div", { class: "notice notice-error", role: "alert", text: `No trace ${route.traceId} in this ledger.` }));
          setStatus("idle", "Not found");
          return false;
        }
        handleError(error, view);
        return false;
      }
      if (token !== generation) return false;
      renderTrace(data, route);
      setStatus(data.finalized ? "idle" : "live", data.finalized ? "Trace finalized" : "Trace open · refreshing");
      return !data.finalized;
    };
    const open = await load();
    if (open && token === generation) {
      schedule(async () => {
        if (!(await load())) stopTimer();
      });
    }
  }

  function backLink(params) {
    return el("a", { class: "back", href: overviewHref(params), text: "← Overview" });
  }

  /** Spans as a tree in start order; a span whose parent is missing is a root. */
  function buildTree(spans) {
    const nodes = new Map();
    for (const span of spans) nodes.set(span.span_id, { span, children: [], parent: null });
    const roots = [];
    for (const node of nodes.values()) {
      const parent = node.span.parent_span_id ? nodes.get(node.span.parent_span_id) : undefined;
      if (parent && parent !== node) {
        parent.children.push(node);
        node.parent = parent;
      } else roots.push(node);
    }
    const rows = [];
    const seen = new Set();
    const walk = (node, depth, inLoop) => {
      if (seen.has(node)) return;
      seen.add(node);
      const looped = Boolean(node.span.loop) || inLoop;
      rows.push({ node, depth, inLoop: looped });
      for (const child of node.children) walk(child, depth + 1, looped);
    };
    for (const root of roots) walk(root, 0, false);
    for (const node of nodes.values()) if (!seen.has(node)) walk(node, 0, false); // a cycle
    return rows;
  }

  /** Loop members grouped as the server found them: same tool or model under one parent. */
  function loopGroups(spans) {
    const byId = new Map(spans.map((span) => [span.span_id, span]));
    const groups = new Map();
    for (const span of spans) {
      if (!span.loop) continue;
      const what = span.tool ? ["tool", span.tool] : ["model", span.model || span.name];
      const key = span.parent_span_id + "\u0000" + what.join("\u0000");
      if (!groups.has(key)) groups.set(key, { kind: what[0], name: what[1], parent: byId.get(span.parent_span_id), count: 0, femto: 0n });
      const group = groups.get(key);
      group.count += 1;
      group.femto += toFemto(span.rollup ?? span.cost);
    }
    return [...groups.values()].sort((a, b) => (b.femto > a.femto ? 1 : b.femto < a.femto ? -1 : b.count - a.count));
  }

  function renderTrace(data, route) {
    const trace = data.trace || {};
    const spans = data.spans || [];
    const rows = buildTree(spans);
    const root = rows.length ? rows[0].node.span : null;
    const total = trace.cost ?? (root ? root.rollup ?? root.cost : "0");
    const groups = loopGroups(spans);
    const retried = spans.filter((span) => span.retry);
    const parts = [backLink(route.params)];

    parts.push(el("div", { class: "trace-head" },
      el("h1", { "data-testid": "trace-title", text: trace.root_name || (root && root.name) || "(no root span)" }),
      el("div", { class: "mono muted", text: data.trace ? trace.trace_id : route.traceId })));

    const chips = [];
    for (const [label, value] of [["user", trace.user_id], ["department", trace.department], ["tenant", trace.tenant], ["service", trace.service], ["conversation", trace.conversation]]) {
      if (value) chips.push(el("span", { class: "chip" }, el("span", { class: "chip-key", text: label }), el("span", { text: value })));
    }
    if (trace.agents && trace.agents.length) chips.push(el("span", { class: "chip" }, el("span", { class: "chip-key", text: "agents" }), el("span", { text: trace.agents.join(", ") })));
    if (chips.length) parts.push(el("div", { class: "chips" }, chips));

    parts.push(el("section", { class: "kpis" },
      kpi("trace-cost", "Trace cost", money(total, { class: "money big" }), trace.models ? (trace.models || []).join(", ") : ""),
      kpi("trace-calls", "LLM calls", el("span", { text: formatInt(trace.llm_calls ?? spans.filter((s) => s.price_status).length) }), plural(spans.length, "span")),
      kpi("trace-duration", "Duration", el("span", { text: duration(trace.start_time || (root && root.start_time), trace.end_time || (root && root.end_time)) || "—" }), formatTime(trace.start_time || (root && root.start_time))),
      kpi("trace-retries", "Retry overhead", money(trace.retry_overhead ?? "0"), `${plural(retried.length, "failed attempt")} retried`, retried.length ? "warn" : null),
      kpi("trace-loops", "Loop cost", money(trace.loop_cost ?? "0"), groups.length ? `${groups.length} runaway loop${groups.length === 1 ? "" : "s"}` : "no loops", groups.length ? "bad" : null)));

    if (!data.finalized) {
      parts.push(el("div", { class: "notice", text: "This trace is still open: rollups, inherited attribution, retries and loops appear once it is finalized." }));
    }
    if (groups.length) parts.push(loopBanner(groups, trace, total, root));
    if (retried.length) {
      parts.push(el("div", { class: "banner banner-warn", "data-testid": "retry-banner" },
        el("strong", { text: `${retried.length} failed call${retried.length === 1 ? " was" : "s were"} retried` }),
        " — overhead ", money(trace.retry_overhead ?? "0"), "."));
    }

    parts.push(el("section", { class: "card" },
      el("div", { class: "card-head" }, el("h2", { text: "Span tree" }),
        el("span", { class: "legend" },
          el("span", { class: "key key-self" }), "self cost ",
          el("span", { class: "key key-rollup" }), "rollup (span + descendants)")),
      spanTable(rows, total)));
    view.replaceChildren(...parts);
  }

  function loopBanner(groups, trace, total, root) {
    const loopCost = trace.loop_cost ?? fromFemto(groups.reduce((sum, group) => sum + group.femto, 0n));
    const items = groups.map((group) => el("li", {},
      el("strong", { class: "mono", text: group.name }),
      ` (${group.kind}) repeated `,
      el("strong", { "data-testid": "loop-count", text: `${group.count}×` }),
      group.parent ? [" under ", el("span", { class: "mono", text: group.parent.name })] : null,
      " — ", money(fromFemto(group.femto))));
    const stopped = root && root.status_code === 2 && root.status_message ? el("div", { class: "banner-note" }, "Stopped: ", el("span", { text: root.status_message })) : null;
    return el("div", { class: "banner banner-bad", role: "alert", "data-testid": "loop-banner" },
      el("div", { class: "banner-title" },
        el("span", { class: "banner-icon", "aria-hidden": "true", text: "⟳" }),
        el("strong", { text: groups.length === 1 ? "Runaway loop" : `${groups.length} runaway loops` }),
        " · ", money(loopCost, { "data-testid": "loop-cost" }), " spent inside loops",
        el("span", { class: "muted-on-bad", text: ` (${percent(Number(loopCost), Number(total))} of this trace)` })),
      el("ul", {}, items),
      stopped);
  }

  function spanTable(rows, total) {
    const body = el("tbody");
    const collapsed = new Set();
    const entries = [];
    // A row shows when none of its ancestors is collapsed.
    const applyCollapse = () => {
      for (const entry of entries) {
        let hide = false;
        for (let up = entry.node.parent; up && !hide; up = up.parent) hide = collapsed.has(up);
        entry.tr.hidden = hide;
        if (hide) entry.details.hidden = true;
      }
    };
    for (const { node, depth, inLoop } of rows) {
      const span = node.span;
      const classes = ["span-row"];
      if (span.loop) classes.push("row-loop");
      else if (inLoop) classes.push("row-in-loop");
      if (span.retry) classes.push("row-retry");
      if (span.status_code === 2) classes.push("row-error");
      const tr = el("tr", { class: classes.join(" "), "data-span": span.span_id, tabindex: "0", "aria-expanded": "false" },
        el("td", { class: "span-cell" },
          el("div", { class: "span-name", style: `padding-left:${Math.min(depth, 30) * 18}px` },
            node.children.length
              ? el("button", { type: "button", class: "twisty", "aria-label": "Collapse or expand", title: `${plural(node.children.length, "child span")}`, text: "▾" })
              : el("span", { class: "twisty", "aria-hidden": "true", text: "•" }),
            el("span", { class: "name", text: span.name || "(unnamed)" }),
            spanBadges(span))),
        el("td", { class: "cost-cell" }, costBar(span.cost, total, "self")),
        el("td", { class: "cost-cell" }, costBar(span.rollup ?? span.cost, total, "rollup")),
        el("td", { class: "tokens" }, tokenCell(span)),
        el("td", {}, cacheCell(span)),
        el("td", { class: "attribution" }, attributionCell(node)));
      const details = el("tr", { class: "details", hidden: true }, el("td", { colspan: 6 }, spanDetails(span)));
      const toggle = () => {
        details.hidden = !details.hidden;
        tr.setAttribute("aria-expanded", String(!details.hidden));
      };
      tr.addEventListener("click", (event) => {
        const twisty = event.target instanceof Element ? event.target.closest("button.twisty") : null;
        if (twisty) {
          if (collapsed.has(node)) collapsed.delete(node);
          else collapsed.add(node);
          twisty.textContent = collapsed.has(node) ? "▸" : "▾";
          applyCollapse();
          return;
        }
        if (!(event.target instanceof HTMLAnchorElement)) toggle();
      });
      tr.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          toggle();
        }
      });
      entries.push({ node, tr, details });
      body.append(tr, details);
    }
    return el("div", { class: "table-wrap" }, el("table", { class: "grid tree", "data-testid": "span-tree" },
      el("thead", {}, el("tr", {}, ...["Span", "Self cost", "Rollup", "Tokens", "Cache", "Attribution"].map((text) => el("th", { scope: "col", text })))),
      body));
  }

  function spanBadges(span) {
    const badges = [];
    if (span.model) badges.push(el("span", { class: "badge badge-model", text: span.model }));
    else if (span.tool) badges.push(el("span", { class: "badge badge-tool", text: "tool " + span.tool }));
    else if (span.operation) badges.push(el("span", { class: "badge", text: span.operation }));
    if (span.loop) badges.push(el("span", { class: "badge badge-bad", "data-flag": "loop", text: "LOOP" }));
    if (span.retry) badges.push(el("span", { class: "badge badge-warn", "data-flag": "retry", text: "RETRIED" }));
    if (span.status_code === 2) badges.push(el("span", { class: "badge badge-error", "data-flag": "error", text: "error", title: span.status_message || "" }));
    if (span.price_status === "unpriced") badges.push(el("span", { class: "badge badge-warn", "data-flag": "unpriced", text: "unpriced" }));
    if (span.price_status === "invalid_usage") badges.push(el("span", { class: "badge badge-warn", text: "invalid usage", title: span.price_reason || "" }));
    if (span.orphan) badges.push(el("span", { class: "badge", text: "orphan", title: "its parent span has not arrived" }));
    return badges;
  }

  function costBar(amount, total, kind) {
    if (amount === null || amount === undefined) return el("span", { class: "muted", text: "—" });
    const width = ratio(amount, total) * 100;
    return el("div", { class: "cost-bar" },
      el("div", { class: "track" }, width > 0 ? el("div", { class: "fill fill-" + kind, style: `width:${width.toFixed(2)}%` }) : null),
      Number(amount) === 0 ? el("span", { class: "money zero", "data-usd": amount, text: "—" }) : money(amount));
  }

  function tokenCell(span) {
    if (!span.price_status) return el("span", { class: "muted", text: "" });
    const input = Number(span.input_uncached) + Number(span.cache_read) + Number(span.cache_write) + Number(span.cache_write_1h);
    const title = `input ${formatInt(span.input_uncached)} uncached, ${formatInt(span.cache_read)} cache read, ` +
      `${formatInt(Number(span.cache_write) + Number(span.cache_write_1h))} cache write; output ${formatInt(span.output)}` +
      (span.reasoning ? ` (${formatInt(span.reasoning)} reasoning)` : "");
    return el("span", { title },
      el("span", { text: `${formatInt(input)} in` }),
      span.cache_read ? el("span", { class: "muted", text: ` (${formatInt(span.cache_read)} cached)` }) : null,
      el("span", { text: ` · ${formatInt(span.output)} out` }));
  }

  function cacheCell(span) {
    const status = span.cache_status;
    if (!status || status === "none") return el("span", { class: "muted", text: "" });
    const tone = { hit: "good", partial: "good", write: "info", miss: "" }[status] ?? "";
    return el("span", {},
      el("span", { class: "badge" + (tone ? " badge-" + tone : ""), text: status }),
      Number(span.saved_by_cache) > 0 ? el("div", { class: "small good-text" }, "saved ", money(span.saved_by_cache)) : null);
  }

  function attributionCell(node) {
    const span = node.span;
    const parent = node.parent ? node.parent.span : null;
    const out = [];
    for (const [key, label] of [["user_id", "user"], ["department", "dept"], ["agent_path", "agent"]]) {
      const value = span[key];
      if (!value) continue;
      const inherited = parent !== null && parent[key] === value && key !== "agent_path";
      out.push(el("span", { class: "attr" + (inherited ? " inherited" : ""), title: inherited ? `${label} inherited from an ancestor span` : `${label} set on this span` },
        el("span", { class: "attr-key", text: label }), el("span", { text: value })));
    }
    return out.length ? out : el("span", { class: "muted", text: "—" });
  }

  function spanDetails(span) {
    const facts = [
      ["span id", span.span_id],
      ["parent", span.parent_span_id || "(root)"],
      ["started", formatTime(span.start_time)],
      ["duration", duration(span.start_time, span.end_time)],
      ["status", span.status_code === 2 ? "error: " + (span.status_message || "") : "ok"],
      ["price", [span.price_status, span.price_model, span.price_source].filter(Boolean).join(" · ")],
      ["price reason", span.price_reason],
      ["usage source", span.usage_source],
      ["cost split", span.price_status ? `input $${span.cost_input} · cache read $${span.cost_cache_read} · cache write $${span.cost_cache_write} · output $${span.cost_output}` : ""],
      ["reported cost", span.reported !== null && span.reported !== undefined ? "$" + span.reported : ""],
    ].filter(([, value]) => value);
    const attributes = Object.entries(span.attributes || {});
    const resource = Object.entries(span.resource || {});
    const list = (entries) => el("dl", { class: "kv" }, entries.map(([key, value]) => [el("dt", { text: key }), el("dd", { text: typeof value === "string" ? value : JSON.stringify(value) })]));
    return el("div", { class: "span-details" },
      el("div", {}, el("h3", { text: "Span" }), list(facts)),
      el("div", {}, el("h3", { text: "Attributes" }), attributes.length ? list(attributes) : el("p", { class: "muted", text: "none" })),
      el("div", {}, el("h3", { text: "Resource" }), resource.length ? list(resource) : el("p", { class: "muted", text: "none" })));
  }

  // ---------------------------------------------------------------------------------
  async function route() {
    generation += 1;
    const token = generation;
    stopTimer();
    updateTokenButton();
    const current = currentRoute();
    try {
      if (current.view === "trace") await showTrace(current, token);
      else await showOverview(current, token);
    } catch (error) {
      if (token === generation) handleError(error, view);
    }
  }

  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer !== null) setStatus("live", "Live");
  });
  route();
})();
