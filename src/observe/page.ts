/**
 * The live status page: one HTML document, rendered on the server from a
 * {@link StatusSnapshot}, that a person reads at a glance (on a phone too).
 * It works without JavaScript; with it, it polls `fragment` every 2 s and
 * swaps the main content. No external resources: inline CSS, JS and SVG.
 *
 * Times are shown in UTC with a "UTC" suffix (deterministic, whatever the
 * server's time zone), with the date when it is not the snapshot's day.
 * Sizes use decimal units (1 KB = 1000 bytes).
 * @module
 */
import type {
  AddressChange,
  LiveTransfer,
  SessionStatus,
  StatusSnapshot,
  Told,
  TransferDone,
} from "./snapshot.ts";

/** How often the page polls for a new fragment, in milliseconds. */
export const POLL_MS = 2000;

/** The plot's width in seconds (the x axis), and its height in view-box units. */
const PLOT_SECONDS = 3600;
const PLOT_HEIGHT = 100;

/** How many passive ports in use are listed before "+N more". */
const MAX_PORTS_LISTED = 24;

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Escapes text for HTML element content and double-quoted attributes. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** Escapes a snapshot string, showing null as a dash. */
function escOr(text: string | null, dash = "—"): string {
  return text === null ? dash : escapeHtml(text);
}

/** Formats a byte count as B, KB, MB, GB or TB (decimal, one decimal place). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "?";
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let i = 0;
  while (value >= 999.95 && i < units.length - 1) {
    value /= 1000;
    i++;
  }
  return `${value.toFixed(1)} ${units[i]}`;
}

/** Formats bytes per second, e.g. "2.5 MB/s". */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/** Formats seconds as "45 s", "12 min 5 s", "3 h 12 min" or "2 d 4 h". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  const pair = (big: number, bigUnit: string, small: number, smallUnit: string) =>
    small === 0 ? `${big} ${bigUnit}` : `${big} ${bigUnit} ${small} ${smallUnit}`;
  const m = Math.floor(s / 60);
  if (m < 60) return pair(m, "min", s % 60, "s");
  const h = Math.floor(m / 60);
  if (h < 24) return pair(h, "h", m % 60, "min");
  return pair(Math.floor(h / 24), "d", h % 24, "h");
}

/** Formats an ISO time as "HH:MM:SS UTC", with the date when it is not `now`'s day. */
export function formatTime(iso: string | null, now: string): string {
  if (iso === null) return "—";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return escapeHtml(iso);
  const text = t.toISOString();
  const day = text.slice(0, 10);
  const sameDay = day === utcDay(now);
  return `<time datetime="${text}">${sameDay ? "" : `${day} `}${text.slice(11, 19)} UTC</time>`;
}

/** The UTC date ("YYYY-MM-DD") of an ISO time; "" when it is unreadable. */
function utcDay(iso: string): string {
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? "" : t.toISOString().slice(0, 10);
}

/** Seconds from `from` to `to` (ISO times); NaN when either is unreadable. */
function secondsBetween(from: string, to: string): number {
  return (Date.parse(to) - Date.parse(from)) / 1000;
}

/** The newest-first copy of a list of items with an ISO `at`. */
function newestFirst<T extends { at: string }>(items: readonly T[]): T[] {
  const time = (x: T) => Date.parse(x.at) || 0;
  return [...items].sort((a, b) => time(b) - time(a));
}

/** A table in a horizontally scrolling box, or a muted line when there are no rows. */
function table(headers: string[], rows: string[][], empty: string): string {
  if (rows.length === 0) return `<p class="m">${empty}</p>`;
  const head = headers.map((h) => `<th>${h}</th>`).join("");
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("");
  return `<div class="t"><table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
}

/** A definition list from label/HTML pairs. */
function facts(pairs: [string, string][]): string {
  return `<dl>${pairs.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("")}</dl>`;
}

/** A small coloured label; `level` is one of the page's own class names. */
function badge(text: string, level: "ok" | "warn" | "bad" | "info" | "off"): string {
  return `<span class="b ${level}">${text}</span>`;
}

/** The headline's colour: green, amber, red or blue. */
export type VerdictLevel = "ok" | "warn" | "bad" | "info";

/** The headline verdict: a title and a detail line, both already HTML. */
export interface Verdict {
  level: VerdictLevel;
  title: string;
  detail: string;
}

/** "They are told X (reason)" for the verdict's detail line. */
function toldLine(told: Told): string {
  const what = told.address === null ? "no address in PASV" : escapeHtml(told.address);
  return `Remote clients are told ${what}: ${escapeHtml(told.reason)}.`;
}

/** Decides the headline: can outside clients reach the server, and what are they told? */
export function verdict(s: StatusSnapshot): Verdict {
  const pa = s.publicAddress;
  const unreachable = pa.unreachable === null ? "" : ` ${escapeHtml(pa.unreachable)}`;
  if (pa.source === "none") {
    return {
      level: "info",
      title: "LAN only: no public address configured",
      detail: toldLine(s.told.remote) + unreachable,
    };
  }
  if (pa.address === null) {
    const why = pa.lastError === null ? "No lookup has succeeded yet." : escapeHtml(pa.lastError);
    return {
      level: "bad",
      title: "No public address known: remote clients cannot connect",
      detail: `${why}${unreachable} ${toldLine(s.told.remote)}`,
    };
  }
  const address = escapeHtml(pa.address);
  if (pa.unreachable !== null) {
    return {
      level: "bad",
      title: `Remote clients are told ${address}, which cannot work from the internet`,
      detail: escapeHtml(pa.unreachable),
    };
  }
  if (pa.lastError !== null || pa.consecutiveFailures > 0) {
    const n = pa.consecutiveFailures;
    const error = pa.lastError === null ? "" : `: ${escapeHtml(pa.lastError)}`;
    const failing = pa.source === "router"
      ? "The router does not answer"
      : pa.source === "http"
      ? "The address service fails"
      : "DNS lookups failing";
    return {
      level: "warn",
      title: `${failing}; still telling the last good address ${address}`,
      detail: `${n} failed lookup${n === 1 ? "" : "s"} in a row since ${
        formatTime(pa.failingSince ?? pa.lastErrorAt, s.now)
      } (last good answer at ${formatTime(pa.resolvedAt, s.now)})${error}`,
    };
  }
  return { level: "ok", title: `Remote clients are told ${address}`, detail: sourceText(s) };
}

/** Where the public address comes from, in words. */
function sourceText(s: StatusSnapshot): string {
  const pa = s.publicAddress;
  if (pa.source === "fixed") return "Fixed in the configuration.";
  if (pa.source === "none") return "Not configured.";
  if (pa.source === "router") return `Reported by the router over ${escapeHtml(pa.dnsServer)}.`;
  if (pa.source === "http") return `Answered by ${escOr(pa.host)} (HTTP).`;
  return `Looked up from ${escOr(pa.host)} via ${dnsServerText(pa.dnsServer)}.`;
}

/** The DNS server in words: "the system resolver" or its "ip:port". */
function dnsServerText(dnsServer: string): string {
  return dnsServer === "system" ? "the system resolver" : escapeHtml(dnsServer);
}

/** The headline section. */
function verdictSection(s: StatusSnapshot): string {
  const v = verdict(s);
  return `<section class="v ${v.level}"><h1>${v.title}</h1><p>${v.detail}</p></section>`;
}

/** One history entry: "from → to" and when. */
function historyRow(c: AddressChange, now: string): string[] {
  return [formatTime(c.at, now), `${escOr(c.from, "(none)")} → ${escapeHtml(c.to)}`];
}

/** The last error in plain words, with the resolver's own text as a tooltip and small print. */
function lastErrorText(s: StatusSnapshot): string {
  const pa = s.publicAddress;
  if (pa.lastError === null) return "none";
  const raw = pa.lastErrorRaw === null ? "" : escapeHtml(pa.lastErrorRaw);
  const small = raw === "" ? "" : `<br><small>${raw}</small>`;
  return `<span title="${raw}">${escapeHtml(pa.lastError)}</span> (${
    formatTime(pa.lastErrorAt, s.now)
  })${small}`;
}

/** When the next lookup is due, with how long until then. */
function nextRefreshText(s: StatusSnapshot): string {
  const next = s.publicAddress.nextRefreshAt;
  if (next === null) return "—";
  const wait = secondsBetween(s.now, next);
  return `${formatTime(next, s.now)}${wait >= 0 ? ` (in ${formatDuration(wait)})` : ""}`;
}

/** The public address card. */
function addressCard(s: StatusSnapshot): string {
  const pa = s.publicAddress;
  const source = pa.source === "dns"
    ? `${escOr(pa.host)} via ${dnsServerText(pa.dnsServer)}`
    : pa.source === "router"
    ? `the router, over ${escapeHtml(pa.dnsServer)}`
    : pa.source === "http"
    ? `${escOr(pa.host)} (HTTP)`
    : pa.source === "fixed"
    ? "fixed in config"
    : "not configured";
  const rows = newestFirst(pa.history).map((c) => historyRow(c, s.now));
  return `<section><h2>Public address</h2>${
    facts([
      ["Address", `<b>${escOr(pa.address, "none known")}</b>`],
      ["Source", source],
      ["Resolved at", formatTime(pa.resolvedAt, s.now)],
      ["Next refresh", nextRefreshText(s)],
      ["Lookups", `${pa.resolutions.ok} ok, ${pa.resolutions.failed} failed`],
      ["Last error", lastErrorText(s)],
    ])
  }<h3>Changes</h3>${table(["When", "From → to"], rows, "No changes since start.")}</section>`;
}

/** What one kind of client is told, and why. */
function toldText(told: Told): string {
  const address = told.address === null
    ? "no address (EPSV instead)"
    : `<b>${escapeHtml(told.address)}</b>`;
  return `${address}<br><small>${escapeHtml(told.reason)}</small>`;
}

/** The passive range and the ports in use now. */
function passiveText(s: StatusSnapshot): string {
  const { min, max, inUse } = s.passive;
  const ports = [...inUse].sort((a, b) => a - b);
  const listed = ports.slice(0, MAX_PORTS_LISTED).join(", ");
  const more = ports.length > MAX_PORTS_LISTED ? ` +${ports.length - MAX_PORTS_LISTED} more` : "";
  const used = ports.length === 0 ? "none in use" : `in use: ${listed}${more}`;
  const n = max - min + 1;
  return `${min}–${max} (${n} port${n === 1 ? "" : "s"})<br><small>${used}</small>`;
}

/** FTPS: off, or on with its policy and implicit port. */
function ftpsText(s: StatusSnapshot): string {
  if (!s.ftps.enabled) return badge("off", "off");
  const port = s.ftps.implicitPort === null
    ? "no implicit port"
    : `implicit port ${s.ftps.implicitPort}`;
  return `${badge("on", "ok")} required: ${escapeHtml(s.ftps.required)}, ${port}`;
}

/** The router's port mappings: how many, over what, its WAN address, or what went wrong. */
function routerText(pm: NonNullable<StatusSnapshot["portMapping"]>): string {
  if (pm.protocol === null) {
    return `${badge("no answer", "bad")} <small>${escOr(pm.lastError)}</small>`;
  }
  const level = pm.lastError === null ? "ok" : "warn";
  const lease = pm.nextRoundAt ? `; renewal ${escapeHtml(pm.nextRoundAt.slice(11, 19))} UTC` : "";
  return `${badge(`${pm.mappings.length} ports mapped`, level)} over ${
    escapeHtml(pm.protocol)
  } at ${escOr(pm.gateway)}<br><small>WAN address ${escOr(pm.externalAddress)}${lease}${
    pm.lastError === null ? "" : `; ${escapeHtml(pm.lastError)}`
  }</small>`;
}

/** The "who is told what" card. */
function toldCard(s: StatusSnapshot): string {
  return `<section><h2>Who is told what</h2>${
    facts([
      ["Remote clients", toldText(s.told.remote)],
      ["LAN clients", toldText(s.told.lan)],
      ["Passive ports", passiveText(s)],
      ["FTPS", ftpsText(s)],
      ...(s.portMapping ? [["Router", routerText(s.portMapping)] as [string, string]] : []),
    ])
  }</section>`;
}

/** The progress of a transfer whose size is known, as a whole percentage (0–100). */
export function progressPercent(t: Pick<LiveTransfer, "bytes" | "size">): number | null {
  if (t.size === null) return null;
  if (t.size <= 0) return 100;
  return Math.min(100, Math.max(0, Math.floor((t.bytes / t.size) * 100)));
}

/** The current-transfer cell: verb and path, bytes, rate and progress. */
function transferCell(t: LiveTransfer | null): string {
  if (t === null) return `<span class="m">idle</span>`;
  const pct = progressPercent(t);
  const of = t.size === null ? "" : ` of ${formatBytes(t.size)}`;
  const bar = pct === null ? "" : ` <progress max="100" value="${pct}"></progress> ${pct}%`;
  return `${escapeHtml(t.verb)} <span class="p" title="${escapeHtml(t.path)}">${
    escapeHtml(t.path)
  }</span><br>${formatBytes(t.bytes)}${of}, ${formatRate(t.rate)}${bar}`;
}

/** TLS badges for a session: control channel and data channel (PROT P). */
function tlsBadges(tls: SessionStatus["tls"]): string {
  const control = tls.control ? badge("TLS", "ok") : badge("plain", "off");
  return tls.data ? `${control} ${badge("data TLS", "ok")}` : control;
}

/** The sessions table. */
function sessionsSection(s: StatusSnapshot): string {
  const rows = s.sessions.map((x) => [
    escapeHtml(x.peer),
    escOr(x.user, `<span class="m">not logged in</span>`),
    transferCell(x.transfer),
    formatTime(x.since, s.now),
    formatDuration(x.idleSeconds),
    tlsBadges(x.tls),
  ]);
  const headers = ["Peer", "User", "Transfer", "Since", "Idle", "TLS"];
  return `<section><h2>Sessions (${s.sessions.length})</h2>${
    table(headers, rows, "No one is connected.")
  }</section>`;
}

/** A "nice" axis maximum at or above `value`: 1, 2 or 5 times a power of ten. */
export function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

/** The `points` attribute of one polyline: x in seconds, y scaled to the plot height. */
function polylinePoints(rates: number[], interval: number, span: number, max: number): string {
  const n = rates.length;
  return rates.map((r, i) => {
    const x = span - (n - 1 - i) * interval;
    const y = PLOT_HEIGHT - (r / max) * PLOT_HEIGHT;
    return `${Math.round(x)},${Math.round(y * 10) / 10}`;
  }).join(" ");
}

/** The throughput section: an inline SVG of the last hour, in and out, and the totals. */
function throughputSection(s: StatusSnapshot): string {
  const { intervalSeconds, points } = s.throughput;
  const interval = intervalSeconds > 0 ? intervalSeconds : 10;
  const rateIn = points.map((p) => p.in / interval);
  const rateOut = points.map((p) => p.out / interval);
  const max = niceMax(Math.max(0, ...rateIn, ...rateOut));
  const span = Math.max(PLOT_SECONDS, (points.length - 1) * interval);
  const line = (rates: number[], cls: string) =>
    `<polyline class="${cls}" points="${polylinePoints(rates, interval, span, max)}"/>`;
  const svg = `<svg viewBox="0 0 ${span} ${PLOT_HEIGHT}" preserveAspectRatio="none" ` +
    `role="img" aria-label="Throughput, last hour">${line(rateIn, "pi")}${
      line(rateOut, "po")
    }</svg>`;
  const st = s.stats;
  return `<section><h2>Throughput</h2><div class="ax"><span>max ${formatRate(max)}</span><span>` +
    `<i class="ki">■</i> in (uploads) <i class="ko">■</i> out (downloads)</span></div>${svg}` +
    `<div class="ax"><span>-${Math.round(span / 60)} min</span><span>now</span></div>` +
    `<p class="m">Since start: ${formatBytes(st.bytesIn)} in, ${formatBytes(st.bytesOut)} out, ` +
    `${st.transfers} transfers, ${st.loginsOk} logins ok, ${st.loginsFailed} failed.</p></section>`;
}

/** The result of a finished transfer as a badge. */
function resultBadge(result: string): string {
  const level = result === "ok" ? "ok" : result === "aborted" ? "warn" : "bad";
  return badge(escapeHtml(result), level);
}

/** One finished transfer as table cells. */
function transferRow(t: TransferDone, now: string): string[] {
  return [
    formatTime(t.at, now),
    escapeHtml(t.peer),
    escOr(t.user),
    `${escapeHtml(t.verb)} <span class="p" title="${escapeHtml(t.path)}">${
      escapeHtml(t.path)
    }</span>`,
    formatBytes(t.bytes),
    formatDuration(t.seconds),
    resultBadge(t.result),
  ];
}

/** Recent transfers, login failures and bans. */
function historySections(s: StatusSnapshot): string {
  const transfers = newestFirst(s.recentTransfers).map((t) => transferRow(t, s.now));
  const failures = newestFirst(s.loginFailures).map((f) => [
    formatTime(f.at, s.now),
    escapeHtml(f.addr),
    escapeHtml(f.user),
  ]);
  const bans = s.bans.map((b) => [escapeHtml(b.addr), formatDuration(b.secondsLeft)]);
  const th = ["When", "Peer", "User", "What", "Bytes", "Took", "Result"];
  return `<section><h2>Recent transfers</h2>${table(th, transfers, "None yet.")}</section>` +
    `<div class="g"><section><h2>Login failures</h2>${
      table(["When", "From", "User"], failures, "None.")
    }</section><section><h2>Bans</h2>${
      table(["Address", "Time left"], bans, "No one is banned.")
    }</section></div>`;
}

/** The footer: version, mode, uptime, listen address, schema and the machine-readable links. */
function footer(s: StatusSnapshot): string {
  return `<footer>pitifulnat ${escapeHtml(s.version)} · ${escapeHtml(s.mode)} · up ${
    formatDuration(s.uptimeSeconds)
  } · listening on ${escapeHtml(s.listen)} · schema ${s.schema} · updated ${
    formatTime(s.now, s.now)
  } · <a href="status">status JSON</a> · <a href="metrics">metrics</a></footer>`;
}

/** The inner HTML of the page's main content: what each poll replaces. */
export function renderFragment(s: StatusSnapshot): string {
  return verdictSection(s) +
    `<div class="g">${addressCard(s)}${toldCard(s)}</div>` +
    sessionsSection(s) +
    throughputSection(s) +
    historySections(s) +
    footer(s);
}

/** The colours, light and dark: the page's only theme knobs. */
const COLOURS = [
  ":root{color-scheme:light dark;--bg:#f5f6f8;--fg:#1b1f24;--m:#5c6775;--card:#fff;" +
  "--line:#dde1e6;--ok:#1a7f37;--okb:#e7f5eb;--warn:#8a5d00;--warnb:#fff4d6;--bad:#c62828;" +
  "--badb:#fde8e8;--info:#0b5cad;--infob:#e3effb;--off:#6e7781;--in:#0b72d9;--out:#d9480f}",
  "@media(prefers-color-scheme:dark){:root{--bg:#101317;--fg:#e6e8eb;--m:#9aa4b1;" +
  "--card:#1a1f26;--line:#2f3742;--ok:#4ac26b;--okb:#12261a;--warn:#e3b341;--warnb:#2b2410;" +
  "--bad:#ff7b72;--badb:#2d1414;--info:#6cb6ff;--infob:#122338;--off:#8b949e;--in:#4dabf7;" +
  "--out:#ff922b}}",
];

/** The layout: cards in one column, two side by side from 700 px up; tables scroll. */
const LAYOUT = [
  "*{box-sizing:border-box}",
  "body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,sans-serif}",
  "main{max-width:1100px;margin:auto;padding:12px}",
  "section{background:var(--card);border:1px solid var(--line);border-radius:8px;" +
  "padding:12px 14px;margin:0 0 12px;min-width:0}",
  "h1{font-size:1.3em;margin:0 0 4px}h2{font-size:1.05em;margin:0 0 8px}",
  "h3{font-size:.95em;margin:12px 0 4px}p{margin:0}",
  ".g{display:grid;grid-template-columns:1fr 1fr;gap:0 12px}",
  "@media(max-width:700px){.g{grid-template-columns:1fr}}",
  "dl{display:grid;margin:0;grid-template-columns:max-content 1fr;gap:4px 12px}",
  "dt{color:var(--m)}dd{margin:0;overflow-wrap:anywhere}",
  ".t{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.92em}",
  "th,td{text-align:left;padding:4px 8px;vertical-align:top;" +
  "border-bottom:1px solid var(--line);white-space:nowrap}",
  "th{color:var(--m);font-weight:600}",
  ".p{display:inline-block;max-width:24em;overflow:hidden;text-overflow:ellipsis;" +
  "vertical-align:bottom}",
  "footer{font-size:.85em;padding:4px 2px 24px}",
];

/** The verdict, badges, plot and "not answering" notice. */
const PARTS = [
  ".ok{--c:var(--ok);--cb:var(--okb)}.warn{--c:var(--warn);--cb:var(--warnb)}",
  ".bad{--c:var(--bad);--cb:var(--badb)}.info{--c:var(--info);--cb:var(--infob)}",
  ".off{--c:var(--off)}",
  ".v{border-left:6px solid var(--c);background:var(--cb)}.v h1{color:var(--c)}",
  ".b{display:inline-block;padding:0 6px;border-radius:9px;font-size:.8em;" +
  "border:1px solid var(--c);color:var(--c)}",
  ".m,small,footer{color:var(--m)}a{color:var(--info)}",
  "progress{width:80px;vertical-align:middle;accent-color:var(--ok)}",
  "svg{display:block;width:100%;height:140px;border:solid var(--line);border-width:0 0 1px 1px}",
  "polyline{fill:none;stroke-width:1.5;vector-effect:non-scaling-stroke}",
  ".pi{stroke:var(--in)}.po{stroke:var(--out)}.ki{color:var(--in)}.ko{color:var(--out)}",
  "i{font-style:normal}",
  ".ax{display:flex;justify-content:space-between;color:var(--m);font-size:.85em}",
  "#n{position:fixed;bottom:8px;left:50%;transform:translateX(-50%);margin:0;" +
  "padding:4px 10px;border-radius:6px;background:var(--badb);color:var(--bad);" +
  "border:1px solid var(--bad)}",
  ".stale{opacity:.55}",
];

const CSS = [...COLOURS, ...LAYOUT, ...PARTS].join("");

/**
 * Polls `fragment` every POLL_MS (each poll bounded by a timeout) and swaps
 * the main content; while polls fail, dims it and says since when.
 */
const SCRIPT = [
  `const m = document.getElementById("m"), n = document.getElementById("n");`,
  `let down = null;`,
  `async function poll() {`,
  `  try {`,
  `    const r = await fetch("fragment",`,
  `      { cache: "no-store", signal: AbortSignal.timeout(${POLL_MS * 2}) });`,
  `    if (!r.ok) throw new Error(r.status);`,
  `    m.innerHTML = await r.text();`,
  `    const h = m.querySelector("h1");`,
  `    if (h) document.title = h.textContent + " · pitifulnat";`,
  `    down = null; n.hidden = true; m.className = "";`,
  `  } catch {`,
  `    if (down === null) {`,
  `      down = new Date().toISOString().slice(11, 19) + " UTC";`,
  `      n.textContent = "Server not answering since " + down;`,
  `      n.hidden = false; m.className = "stale";`,
  `    }`,
  `  }`,
  `  setTimeout(poll, ${POLL_MS});`,
  `}`,
  `setTimeout(poll, ${POLL_MS});`,
].join("\n");

/** The whole status page: a complete, self-contained HTML document. */
export function renderPage(s: StatusSnapshot): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">` +
    `<meta name="viewport" content="width=device-width,initial-scale=1">` +
    `<title>${verdict(s).title} · pitifulnat</title><style>${CSS}</style></head><body>` +
    `<main id="m">${renderFragment(s)}</main><p id="n" role="status" hidden></p>` +
    `<script>\n${SCRIPT}\n</script></body></html>\n`;
}
