/**
 * `pitifulnat status`: fetch the running server's status snapshot from its
 * loopback status port and print it readably.
 * @module
 */
import { hostPort } from "../ftp/connection.ts";
import type { StatusSnapshot } from "../observe/status.ts";
import { loadFromCli } from "./common.ts";

/** Renders a snapshot for a terminal. */
export function renderStatus(s: StatusSnapshot): string {
  const pa = s.publicAddress;
  const lines = [
    `pitifulnat ${s.version}, listening on ${s.listen}, up since ${s.startedAt}`,
    `public address: ${pa.address ?? "(not resolved yet)"}` +
    (pa.fixed ? " (fixed in config)" : pa.host ? ` from ${pa.host} via ${pa.dnsServer}` : ""),
  ];
  if (!pa.fixed && pa.host) {
    lines.push(
      `  resolved at: ${pa.resolvedAt ?? "never"}; next refresh: ${pa.nextRefreshAt ?? "-"}`,
    );
    lines.push(
      `  resolutions: ${pa.resolutions.ok} ok, ${pa.resolutions.failed} failed` +
        (pa.lastError ? `; last error at ${pa.lastErrorAt}: ${pa.lastError}` : ""),
    );
  }
  lines.push(
    `transfers: ${s.stats.transfers}; bytes in ${s.stats.bytesIn}, out ${s.stats.bytesOut}; ` +
      `logins ${s.stats.loginsOk} ok, ${s.stats.loginsFailed} failed`,
  );
  lines.push(`sessions: ${s.sessions.length}`);
  for (const x of s.sessions) {
    lines.push(
      `  ${x.id} ${x.peer} user=${x.user ?? "-"} since ${x.since}` +
        ` tls=${
          x.tls ? `${x.tls.control ? "control" : "none"}${x.tls.data ? "+data" : ""}` : "none"
        }` +
        (x.transfer ? ` [${x.transfer}]` : ""),
    );
  }
  return lines.join("\n");
}

/** Runs the command; returns the exit code. */
export async function runStatus(options: { config?: string; url?: string }): Promise<number> {
  let url = options.url;
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
    url = `http://${hostPort(address, port)}/status`;
  }
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    console.log(renderStatus(await res.json() as StatusSnapshot));
    return 0;
  } catch (e) {
    console.error(`pitifulnat status: cannot read ${url}: ${(e as Error).message}`);
    return 1;
  }
}
