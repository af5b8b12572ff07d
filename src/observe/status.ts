/**
 * The operator's view of a running server: a JSON status snapshot and
 * Prometheus metrics on a loopback-only HTTP port (off unless configured).
 * @module
 */
import type { Config } from "../config/schema.ts";
import { hostPort } from "../ftp/connection.ts";
import type { ControlSession, ServerStats } from "../ftp/control_server.ts";
import type { PublicAddress } from "../nat/public_address.ts";

/** The status snapshot served as JSON and printed by `pitifulnat status`. */
export interface StatusSnapshot {
  version: string;
  startedAt: string;
  listen: string;
  publicAddress: ReturnType<PublicAddress["snapshot"]>;
  sessions: {
    id: string;
    peer: string;
    user: string | null;
    since: string;
    transfer: string | null;
    /** Whether the control connection and (PROT P) the data connections are TLS. */
    tls: { control: boolean; data: boolean };
  }[];
  stats: ServerStats;
}

const NOT_CONFIGURED: ReturnType<PublicAddress["snapshot"]> = {
  address: null,
  fixed: false,
  resolvedAt: null,
  dnsServer: "(no public address configured)",
  lastError: null,
  lastErrorAt: null,
  consecutiveFailures: 0,
  nextRefreshAt: null,
  resolutions: { ok: 0, failed: 0 },
};

/** Builds the snapshot. */
export function statusSnapshot(
  server: { config: Config; sessions: ReadonlySet<ControlSession>; stats: ServerStats },
  options: { publicAddress: PublicAddress | null; version: string; startedAt: Date },
): StatusSnapshot {
  const { address, port } = server.config.listen;
  return {
    version: options.version,
    startedAt: options.startedAt.toISOString(),
    listen: hostPort(address, port),
    publicAddress: options.publicAddress?.snapshot() ?? NOT_CONFIGURED,
    sessions: [...server.sessions].map((s) => ({
      id: s.id,
      peer: `${s.peer}:${s.peerPort}`,
      user: s.userName,
      since: new Date(s.openedAt).toISOString(),
      transfer: s.transfer?.describe() ?? null,
      tls: { control: s.secure, data: s.secure && s.protectData },
    })),
    stats: { ...server.stats },
  };
}

function label(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** Renders the snapshot in the Prometheus text format. */
export function metricsText(snap: StatusSnapshot): string {
  const pa = snap.publicAddress;
  const lines = [
    "# HELP pitifulnat_sessions Open FTP sessions.",
    "# TYPE pitifulnat_sessions gauge",
    `pitifulnat_sessions ${snap.sessions.length}`,
    "# HELP pitifulnat_tls_sessions Open sessions whose control connection is TLS.",
    "# TYPE pitifulnat_tls_sessions gauge",
    `pitifulnat_tls_sessions ${snap.sessions.filter((x) => x.tls.control).length}`,
    "# HELP pitifulnat_logins_total Logins by result.",
    "# TYPE pitifulnat_logins_total counter",
    `pitifulnat_logins_total{result="ok"} ${snap.stats.loginsOk}`,
    `pitifulnat_logins_total{result="failed"} ${snap.stats.loginsFailed}`,
    "# HELP pitifulnat_bytes_total Bytes moved over data connections.",
    "# TYPE pitifulnat_bytes_total counter",
    `pitifulnat_bytes_total{direction="in"} ${snap.stats.bytesIn}`,
    `pitifulnat_bytes_total{direction="out"} ${snap.stats.bytesOut}`,
    "# HELP pitifulnat_transfers_total Data-connection transfers finished or failed: " +
    "downloads, uploads and directory listings (LIST, NLST, MLSD), in serve and proxy alike.",
    "# TYPE pitifulnat_transfers_total counter",
    `pitifulnat_transfers_total ${snap.stats.transfers}`,
    "# HELP pitifulnat_resolutions_total Public-address resolutions by result.",
    "# TYPE pitifulnat_resolutions_total counter",
    `pitifulnat_resolutions_total{result="ok"} ${pa.resolutions.ok}`,
    `pitifulnat_resolutions_total{result="failed"} ${pa.resolutions.failed}`,
    "# HELP pitifulnat_public_address_info The public address announced to remote clients.",
    "# TYPE pitifulnat_public_address_info gauge",
    `pitifulnat_public_address_info{address="${label(pa.address ?? "")}"} ${pa.address ? 1 : 0}`,
  ];
  return lines.join("\n") + "\n";
}

/** Serves /status (JSON) and /metrics; returns the running HTTP server. */
export function serveStatus(
  listen: { address: string; port: number },
  snapshot: () => StatusSnapshot,
): Deno.HttpServer {
  return Deno.serve({
    hostname: listen.address,
    port: listen.port,
    onListen: () => {},
  }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/status" || path === "/") {
      return Response.json(snapshot());
    }
    if (path === "/metrics") {
      return new Response(metricsText(snapshot()), {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    }
    return new Response("not found\n", { status: 404 });
  });
}
