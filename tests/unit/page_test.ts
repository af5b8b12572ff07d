/**
 * The status page renderer: the verdict for each state of the public
 * address, escaping of client-controlled strings, no external resources,
 * the throughput plot and transfer progress.
 */
import assert from "node:assert/strict";
import {
  escapeHtml,
  formatBytes,
  formatDuration,
  formatTime,
  niceMax,
  progressPercent,
  renderFragment,
  renderPage,
  verdict,
} from "../../src/observe/page.ts";
import type { PublicAddressStatus, StatusSnapshot } from "../../src/observe/snapshot.ts";
import { snapshots } from "../helpers/snapshot.ts";

const NOW = "2025-03-14T12:00:00.000Z";
const HOSTILE = "<script>alert(1)</script>";
const { ago, snapshot, dnsAddress, busySnapshot } = snapshots(NOW);

/** The page's text with tags removed and entities kept (enough for "does X appear" checks). */
function text(html: string): string {
  return html.replace(/<[^>]*>/g, "");
}

Deno.test("page: the busy snapshot shows its address, sessions, transfers and footer", () => {
  const html = renderPage(busySnapshot());
  assert.match(html, /^<!doctype html>/);
  assert.match(html, /<meta charset="utf-8">/);
  assert.match(html, /<meta name="viewport"/);
  assert.match(html, /<title>Remote clients are told 5\.6\.7\.8 · pitifulnat<\/title>/);
  const t = text(html);
  assert.match(t, /Remote clients are told 5\.6\.7\.8/);
  assert.match(t, /myhome\.example\.net via 9\.9\.9\.9:53/);
  assert.match(t, /1\.2\.3\.4 → 5\.6\.7\.8/);
  assert.match(t, /\(none\) → 1\.2\.3\.4/);
  assert.match(t, /alice/);
  assert.match(t, /\[2001:db8::7\]:50123/);
  assert.match(t, /RETR \/films\/holiday\.mkv/);
  assert.match(t, /250\.0 MB of 1\.0 GB, 2\.5 MB\/s/);
  assert.match(t, /in use: 50003, 50007/);
  assert.match(t, /required: login, implicit port 990/);
  assert.match(t, /198\.51\.100\.7/);
  assert.match(t, /25 min/);
  assert.match(t, /up 3 h 12 min/);
  assert.match(t, /schema 1/);
  assert.match(html, /<a href="status">/);
  assert.match(html, /<a href="metrics">/);
  // Newest first: the change to 5.6.7.8 comes before the first one.
  assert.ok(t.indexOf("1.2.3.4 → 5.6.7.8") < t.indexOf("(none) → 1.2.3.4"));
});

Deno.test("page: the empty snapshot renders, with placeholders instead of tables", () => {
  const html = renderPage(snapshot());
  const t = text(html);
  assert.match(t, /No one is connected\./);
  assert.match(t, /No changes since start\./);
  assert.match(t, /No one is banned\./);
  assert.doesNotMatch(html, /<table/);
  assert.ok(html.length < 12 * 1024, `empty page is ${html.length} bytes`);
});

Deno.test("page: the fragment is the main content of the page", () => {
  const s = busySnapshot();
  assert.ok(renderPage(s).includes(`<main id="m">${renderFragment(s)}</main>`));
});

Deno.test("page: verdicts for ok, fixed, DNS failing, no address, unreachable and LAN only", () => {
  const cases: [string, StatusSnapshot, string, RegExp][] = [
    ["ok", snapshot({ publicAddress: dnsAddress() }), "ok", /Remote clients are told 5\.6\.7\.8$/],
    [
      "fixed",
      snapshot({
        publicAddress: dnsAddress({ source: "fixed", host: null, history: [] }),
      }),
      "ok",
      /Remote clients are told 5\.6\.7\.8$/,
    ],
    [
      "DNS failing",
      snapshot({
        publicAddress: dnsAddress({
          lastError: "the DNS server did not answer",
          lastErrorRaw: "TimedOut: dns query timed out",
          lastErrorAt: ago(5),
          consecutiveFailures: 3,
          failingSince: ago(15),
        }),
      }),
      "warn",
      /DNS lookups failing; still telling the last good address 5\.6\.7\.8/,
    ],
    [
      "no address",
      snapshot({
        publicAddress: dnsAddress({
          address: null,
          resolvedAt: null,
          history: [],
          lastError: "myhome.example.net does not exist",
          consecutiveFailures: 2,
        }),
      }),
      "bad",
      /No public address known/,
    ],
    [
      "unreachable",
      snapshot({
        publicAddress: dnsAddress({
          address: "10.0.0.5",
          unreachable: "10.0.0.5 is a private address",
        }),
      }),
      "bad",
      /Remote clients are told 10\.0\.0\.5, which cannot work from the internet/,
    ],
    ["LAN only", snapshot(), "info", /LAN only: no public address configured/],
    [
      "router failing",
      snapshot({
        publicAddress: dnsAddress({
          source: "router",
          host: "router",
          lastError: "no NAT-PMP reply from 10.0.0.1:5351 after 4 tries",
          lastErrorAt: ago(5),
          consecutiveFailures: 2,
          failingSince: ago(15),
        }),
      }),
      "warn",
      /The router does not answer; still telling the last good address 5\.6\.7\.8/,
    ],
  ];
  for (const [name, s, level, title] of cases) {
    const v = verdict(s);
    assert.equal(v.level, level, name);
    assert.match(v.title, title, name);
    assert.ok(renderPage(s).includes(`<section class="v ${level}"><h1>${v.title}</h1>`), name);
  }
  const failing = verdict(cases[2][1]);
  assert.match(
    failing.detail,
    /3 failed lookups in a row since .*11:59:45 UTC.* \(last good answer at .*11:59:40 UTC/,
  );
  assert.match(failing.detail, /the DNS server did not answer/);
  assert.match(verdict(cases[3][1]).detail, /does not exist/);
  assert.match(verdict(cases[4][1]).detail, /10\.0\.0\.5 is a private address/);
  assert.match(verdict(cases[5][1]).detail, /told 192\.168\.1\.10/);
});

Deno.test("page: hostile strings from clients and DNS are escaped everywhere", () => {
  const s = busySnapshot();
  s.sessions[0].user = HOSTILE;
  s.sessions[0].peer = HOSTILE;
  s.sessions[0].transfer!.path = HOSTILE;
  s.sessions[0].transfer!.verb = HOSTILE;
  s.recentTransfers[0].path = HOSTILE;
  s.recentTransfers[0].user = HOSTILE;
  s.recentTransfers[0].result = HOSTILE;
  s.loginFailures[0].user = HOSTILE;
  s.bans[0].addr = HOSTILE;
  s.version = HOSTILE;
  s.listen = HOSTILE;
  s.told.remote.reason = HOSTILE;
  s.told.lan.reason = HOSTILE;
  s.publicAddress = dnsAddress({
    host: HOSTILE,
    dnsServer: HOSTILE,
    address: HOSTILE,
    lastError: HOSTILE,
    lastErrorRaw: `" onmouseover="alert(1)`,
    lastErrorAt: HOSTILE,
    consecutiveFailures: 1,
    history: [{ at: HOSTILE, from: HOSTILE, to: HOSTILE }],
  });
  const html = renderPage(s);
  assert.ok(!html.includes("<script>alert"), "a raw <script> from the snapshot");
  assert.ok(!html.includes(`" onmouseover=`), "an attribute broke out of its quotes");
  assert.ok(html.includes(escapeHtml(HOSTILE)));
  // The only script is the page's own.
  assert.equal(html.match(/<script>/g)?.length, 1);
  // Every verdict escapes what it quotes.
  const variants: Partial<PublicAddressStatus>[] = [
    { lastError: null, consecutiveFailures: 0 },
    { unreachable: HOSTILE },
    { address: null },
    { source: "none", unreachable: HOSTILE },
  ];
  for (const patch of variants) {
    const v = verdict({ ...s, publicAddress: { ...s.publicAddress, ...patch } });
    assert.ok(!`${v.title}${v.detail}`.includes("<script>"), JSON.stringify(patch));
    assert.ok(`${v.title}${v.detail}`.includes(escapeHtml(HOSTILE)), JSON.stringify(patch));
  }
});

Deno.test("page: no external resources, and links are relative", () => {
  for (const s of [snapshot(), busySnapshot()]) {
    const html = renderPage(s);
    assert.doesNotMatch(html, /https?:\/\//);
    assert.doesNotMatch(html, /(src|href)="(\/\/|[a-z]+:)/i);
    assert.doesNotMatch(html, /url\(/);
    assert.doesNotMatch(html, /@import|<link|<img|<iframe/);
    const hrefs = [...html.matchAll(/href="([^"]*)"/g)].map((m) => m[1]);
    assert.deepEqual(hrefs, ["status", "metrics"]);
    assert.match(html, /fetch\("fragment"/);
  }
});

Deno.test("page: the SVG plot has one point per throughput point, x ending at now", () => {
  const s = busySnapshot();
  const html = renderFragment(s);
  const lines = [...html.matchAll(/<polyline class="(p[io])" points="([^"]*)"/g)];
  assert.equal(lines.length, 2);
  for (const [, , points] of lines) {
    const pairs = points.split(" ");
    assert.equal(pairs.length, s.throughput.points.length);
    assert.equal(pairs.at(-1)!.split(",")[0], "3600");
    for (const p of pairs) {
      const [x, y] = p.split(",").map(Number);
      assert.ok(x >= 0 && x <= 3600 && y >= 0 && y <= 100, p);
    }
  }
  // Peak out is 31 MB per 10 s = 3.1 MB/s, so the axis goes to 5 MB/s.
  assert.match(text(html), /max 5\.0 MB\/s/);
  assert.match(text(html), /-60 min/);
  const empty = renderFragment(snapshot());
  assert.match(empty, /<polyline class="pi" points=""/);
});

Deno.test("page: progress of a transfer with a known size", () => {
  const html = renderFragment(busySnapshot());
  assert.match(html, /<progress max="100" value="25"><\/progress> 25%/);
  assert.equal(progressPercent({ bytes: 999, size: 1000 }), 99);
  assert.equal(progressPercent({ bytes: 5, size: null }), null);
  assert.equal(progressPercent({ bytes: 0, size: 0 }), 100);
  assert.equal(progressPercent({ bytes: 2000, size: 1000 }), 100);
});

Deno.test("page: number, duration and time formats", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(1500), "1.5 KB");
  assert.equal(formatBytes(999_960), "1.0 MB");
  assert.equal(formatBytes(12_300_000_000), "12.3 GB");
  assert.equal(formatDuration(45), "45 s");
  assert.equal(formatDuration(120), "2 min");
  assert.equal(formatDuration(125), "2 min 5 s");
  assert.equal(formatDuration(3 * 3600 + 12 * 60 + 9), "3 h 12 min");
  assert.equal(formatDuration(50 * 3600), "2 d 2 h");
  assert.equal(text(formatTime(ago(65), NOW)), "11:58:55 UTC");
  assert.equal(text(formatTime("2025-03-13T23:59:59Z", NOW)), "2025-03-13 23:59:59 UTC");
  assert.equal(formatTime(null, NOW), "—");
  assert.equal(formatTime(HOSTILE, NOW), escapeHtml(HOSTILE));
  assert.equal(niceMax(0), 1);
  assert.equal(niceMax(3_100_000), 5_000_000);
  assert.equal(niceMax(2_000_000), 2_000_000);
});

Deno.test("page: size of the empty and the busy page", () => {
  const empty = new TextEncoder().encode(renderPage(snapshot())).length;
  const busy = new TextEncoder().encode(renderPage(busySnapshot())).length;
  console.log(`renderPage: empty ${empty} bytes, busy ${busy} bytes`);
  assert.ok(empty < 12 * 1024);
});

Deno.test("page: the router's port mappings are shown when port_mapping is on", () => {
  const s = busySnapshot();
  s.portMapping = {
    running: true,
    protocol: "natpmp",
    gateway: "192.168.1.1",
    externalAddress: "5.6.7.8",
    mappings: Array.from({ length: 22 }, (_, i) => ({
      internalPort: 50000 + i,
      externalPort: 50000 + i,
      lifetimeSeconds: 3600,
      renewedAt: ago(60),
      expiresAt: ago(-3540),
    })),
    failed: [],
    lastError: null,
    lastRoundAt: ago(60),
    nextRoundAt: ago(-1740),
    rounds: 1,
    gatewayRestarts: 0,
  };
  const t = text(renderFragment(s));
  assert.match(t, /Router22 ports mapped over natpmp at 192\.168\.1\.1/);
  assert.match(t, /WAN address 5\.6\.7\.8/);
  assert.doesNotMatch(text(renderFragment(busySnapshot())), /ports mapped/);
});
