/**
 * `pitifulnat status`: fetch the running server's status snapshot from its
 * status port and print it for a terminal (or as JSON).
 * @module
 */
import { dialable, hostPort } from "../ftp/connection.ts";
import type { StatusSnapshot } from "../observe/status.ts";
import { formatBytes, formatRate } from "../observe/page.ts";
import { loadFromCli } from "./common.ts";

/** The public address and what clients are told. */
function addressLines(s: StatusSnapshot): string[] {
  const pa = s.publicAddress;
  const from = pa.source === "fixed"
    ? " (fixed in config)"
    : pa.source === "dns"
    ? ` from ${pa.host} via ${pa.dnsServer}`
    : pa.source === "router"
    ? ` reported by the router over ${pa.dnsServer}`
    : pa.source === "http"
    ? ` answered by ${pa.host} (HTTP)`
    : " (none configured: LAN only)";
  const lines = [`public address: ${pa.address ?? "(not known yet)"}${from}`];
  if (pa.unreachable) lines.push(`  cannot work: ${pa.unreachable}`);
  if (pa.source !== "fixed" && pa.source !== "none") {
    lines.push(
      `  resolved at: ${pa.resolvedAt ?? "never"}; next refresh: ${pa.nextRefreshAt ?? "-"}`,
      `  lookups: ${pa.resolutions.ok} ok, ${pa.resolutions.failed} failed` +
        (pa.lastError ? `; failing since ${pa.lastErrorAt}: ${pa.lastError}` : ""),
    );
    for (const h of pa.history.slice(-5)) lines.push(`  ${h.at}: ${h.from ?? "-"} -> ${h.to}`);
  }
  lines.push(
    `remote clients are told: ${s.told.remote.address ?? "(no PASV address)"} ` +
      `(${s.told.remote.reason})`,
    `LAN clients are told: ${s.told.lan.address ?? "(no PASV address)"} (${s.told.lan.reason})`,
  );
  return lines;
}

/** Renders a snapshot for a terminal. */
export function renderStatus(s: StatusSnapshot): string {
  const ftps = s.ftps.enabled
    ? `FTPS on (required: ${s.ftps.required}` +
      (s.ftps.implicitPort ? `, implicit on ${s.ftps.implicitPort})` : ")")
    : "FTPS off";
  const lines = [
    `pitifulnat ${s.version} (${s.mode}) on ${s.listen}, up ${s.uptimeSeconds} s since ` +
    `${s.startedAt}; ${ftps}; passive ${s.passive.min}-${s.passive.max}`,
    ...addressLines(s),
    `transfers: ${s.stats.transfers}; in ${formatBytes(s.stats.bytesIn)}, out ${
      formatBytes(s.stats.bytesOut)
    }; ` +
    `logins ${s.stats.loginsOk} ok, ${s.stats.loginsFailed} failed`,
    `sessions: ${s.sessions.length}`,
  ];
  for (const x of s.sessions) {
    const t = x.transfer;
    const tls = x.tls.control ? (x.tls.data ? "tls+data" : "tls") : "plain";
    lines.push(
      `  ${x.id} ${x.peer} user=${x.user ?? "-"} since ${x.since} idle ${x.idleSeconds} s ${tls}` +
        (t
          ? ` [${t.verb} ${t.path}: ${formatBytes(t.bytes)}` +
            (t.size ? ` of ${formatBytes(t.size)}` : "") + `, ${formatRate(t.rate)}]`
          : ""),
    );
  }
  for (const b of s.bans) lines.push(`banned: ${b.addr} for ${b.secondsLeft} s more`);
  const failures = s.loginFailures.slice(-5);
  if (failures.length) {
    lines.push("failed logins (last 5):");
    for (const f of failures) lines.push(`  ${f.at} ${f.addr} user=${f.user}`);
  }
  return lines.join("\n");
}

/** Runs the command; returns the exit code. */
export async function runStatus(
  options: { config?: string; url?: string; json?: boolean },
): Promise<number> {
  let url = options.url;
  let where = url ?? "";
  if (!url) {
    const loaded = await loadFromCli(options.config, { allowDefault: false });
    if (!loaded) return 2;
    const { address, port } = loaded.config.status;
    if (!port) {
      console.error(
        "pitifulnat status: status.port is not set in the config, so there is no endpoint",
      );
      return 2;
    }
    // A server listening on every address answers on loopback without a password.
    where = hostPort(dialable(address), port);
    url = `http://${where}/status`;
  }
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch (e) {
    const refused = /refused|ECONNREFUSED|os error 111/i.test(String((e as Error)?.cause ?? e));
    console.error(
      refused
        ? `pitifulnat status: no server is running on ${where} (nothing answers there)`
        : `pitifulnat status: cannot read ${url}: ${(e as Error).message}`,
    );
    return 1;
  }
  if (!res.ok) {
    console.error(`pitifulnat status: ${url} answered HTTP ${res.status}`);
    return 1;
  }
  const text = await res.text();
  console.log(options.json ? text : renderStatus(JSON.parse(text) as StatusSnapshot));
  return 0;
}
