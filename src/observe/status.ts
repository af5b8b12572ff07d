/**
 * The one function that builds the status snapshot (the page, `/status`,
 * `/metrics` and `pitifulnat status` all read it), and the Prometheus text.
 * @module
 */
import type { LoginThrottle } from "../auth/throttle.ts";
import type { Config } from "../config/schema.ts";
import { hostPort } from "../ftp/connection.ts";
import type { ControlSession, ServerStats } from "../ftp/control_server.ts";
import { unreachableFromInternet } from "../nat/address_kind.ts";
import {
  announceAddress,
  announceInputs,
  type LanNetworks,
  parseLanNetworks,
} from "../nat/announce.ts";
import { localAddressFor, plainDnsError, SAMPLE_REMOTE, sampleLanClient } from "../nat/explain.ts";
import type { PortMapperSnapshot } from "../nat/portmap/mod.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import type { Activity } from "./activity.ts";
import {
  type PublicAddressStatus,
  type SessionStatus,
  SNAPSHOT_SCHEMA,
  type StatusSnapshot,
} from "./snapshot.ts";

export type { StatusSnapshot } from "./snapshot.ts";

/** What the snapshot reads of a running server. */
export interface SnapshotSource {
  readonly config: Config;
  readonly sessions: ReadonlySet<ControlSession>;
  readonly stats: ServerStats;
  readonly activity: Activity;
  readonly throttle: LoginThrottle;
  bytesMoved(): { in: number; out: number };
}

/** Builds the snapshot, as of `now`. */
export function statusSnapshot(
  server: SnapshotSource,
  options: {
    publicAddress: PublicAddress | null;
    version: string;
    startedAt: Date;
    mode: "serve" | "proxy";
    now?: Date;
    portMapping?: PortMapperSnapshot | null;
  },
): StatusSnapshot {
  const { config } = server;
  const now = options.now ?? new Date();
  const publicAddress = publicAddressStatus(config, options.publicAddress);
  const moved = server.bytesMoved();
  const tls = config.tls;
  return {
    schema: SNAPSHOT_SCHEMA,
    version: options.version,
    mode: options.mode,
    now: now.toISOString(),
    startedAt: options.startedAt.toISOString(),
    uptimeSeconds: Math.round((now.getTime() - options.startedAt.getTime()) / 1000),
    listen: hostPort(config.listen.address, config.listen.port),
    ftps: tls
      ? { enabled: true, required: tls.required, implicitPort: tls.implicit_port ?? null }
      : { enabled: false },
    publicAddress,
    told: told(config, publicAddress.address),
    passive: {
      min: config.passive.min_port,
      max: config.passive.max_port,
      inUse: [...server.sessions].flatMap((s) => s.listeningPorts).sort((a, b) => a - b),
    },
    portMapping: options.portMapping ?? null,
    sessions: [...server.sessions].map((s) => sessionStatus(s, now)),
    recentTransfers: server.activity.transfers.list(),
    loginFailures: server.activity.loginFailures.list(),
    bans: server.throttle.bans().map((b) => ({
      addr: b.addr,
      secondsLeft: Math.ceil(b.msLeft / 1000),
    })),
    throughput: server.activity.throughput(),
    stats: { ...server.stats, bytesIn: moved.in, bytesOut: moved.out },
  };
}

/** The public address, its source and lookups, in the snapshot's words. */
function publicAddressStatus(config: Config, pa: PublicAddress | null): PublicAddressStatus {
  const snap = pa?.snapshot();
  const address = snap?.address ?? null;
  const raw = snap?.lastError ?? null;
  return {
    source: !snap ? "none" : snap.fixed ? "fixed" : config.public_address?.from ?? "dns",
    host: snap?.host ?? null,
    address,
    dnsServer: snap?.dnsServer ?? "none",
    resolvedAt: snap?.resolvedAt ?? null,
    nextRefreshAt: snap?.nextRefreshAt ?? null,
    // Resolver errors in plain words; the router's and a web service's are plain already.
    lastError: raw === null || config.public_address?.from
      ? raw
      : plainDnsError(raw, config.public_address?.ipv6 ? "AAAA" : "A"),
    lastErrorRaw: raw,
    lastErrorAt: snap?.lastErrorAt ?? null,
    consecutiveFailures: snap?.consecutiveFailures ?? 0,
    failingSince: snap?.failingSince ?? null,
    resolutions: snap?.resolutions ?? { ok: 0, failed: 0 },
    history: snap?.history ?? [],
    unreachable: address ? unreachableFromInternet(address)?.text ?? null : null,
  };
}

/** Per config (a reload brings a new one): its LAN networks and the local address shown. */
const placeOf = new WeakMap<Config, { lan: LanNetworks; local: string }>();

/** What a remote client and a LAN client are told now, as check reports it. */
function told(config: Config, publicAddress: string | null): StatusSnapshot["told"] {
  let place = placeOf.get(config);
  if (!place) {
    // Once per config, not per request: the page asks every 2 s.
    place = { lan: parseLanNetworks(config.lan_networks), local: localAddressFor(config) };
    placeOf.set(config, place);
  }
  const { lan, local } = place;
  const tell = (client: string) => {
    const a = announceAddress(
      announceInputs({ client, local }, { publicAddress, configured: config.public_address }),
      lan,
    );
    return { address: a.address, reason: a.reason };
  };
  return { remote: tell(SAMPLE_REMOTE), lan: tell(sampleLanClient(local, lan)) };
}

/** One session, with its transfer's progress. */
function sessionStatus(s: ControlSession, now: Date): SessionStatus {
  const live = s.transfer?.live();
  const seconds = live ? Math.max((now.getTime() - live.startedAt) / 1000, 0.001) : 0;
  return {
    id: s.id,
    peer: hostPort(s.peer, s.peerPort),
    user: s.userName,
    since: new Date(s.openedAt).toISOString(),
    idleSeconds: Math.max(0, Math.round((now.getTime() - s.lastActivity) / 1000)),
    tls: { control: s.secure, data: s.secure && s.protectData },
    transfer: live
      ? {
        verb: live.verb,
        path: live.path,
        direction: live.direction,
        bytes: live.bytes,
        size: live.size,
        startedAt: new Date(live.startedAt).toISOString(),
        rate: Math.round(live.bytes / seconds),
      }
      : null,
  };
}

function label(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === "\n" ? "\\n" : `\\${c}`));
}

/** Renders the snapshot in the Prometheus text format. */
export function metricsText(snap: StatusSnapshot): string {
  const pa = snap.publicAddress;
  const metric = (name: string, type: string, help: string, values: string[]) => [
    `# HELP pitifulnat_${name} ${help}`,
    `# TYPE pitifulnat_${name} ${type}`,
    ...values.map((v) => `pitifulnat_${name}${v}`),
  ];
  const lines = [
    ...metric("up_seconds", "gauge", "Seconds since the server started.", [
      ` ${snap.uptimeSeconds}`,
    ]),
    ...metric("sessions", "gauge", "Open FTP sessions.", [` ${snap.sessions.length}`]),
    ...metric("tls_sessions", "gauge", "Open sessions whose control connection is TLS.", [
      ` ${snap.sessions.filter((x) => x.tls.control).length}`,
    ]),
    ...metric("transfers_running", "gauge", "Transfers in progress.", [
      ` ${snap.sessions.filter((x) => x.transfer).length}`,
    ]),
    ...metric("logins_total", "counter", "Logins by result.", [
      `{result="ok"} ${snap.stats.loginsOk}`,
      `{result="failed"} ${snap.stats.loginsFailed}`,
    ]),
    ...metric(
      "bytes_total",
      "counter",
      "Bytes moved over data connections, transfers in progress included.",
      [`{direction="in"} ${snap.stats.bytesIn}`, `{direction="out"} ${snap.stats.bytesOut}`],
    ),
    ...metric(
      "transfers_total",
      "counter",
      "Data-connection transfers finished or failed: downloads, uploads and directory " +
        "listings (LIST, NLST, MLSD), in serve and proxy alike.",
      [` ${snap.stats.transfers}`],
    ),
    ...metric("banned_addresses", "gauge", "Addresses banned for repeated failed logins.", [
      ` ${snap.bans.length}`,
    ]),
    ...metric("port_mappings", "gauge", "Ports the router maps to this server now.", [
      ` ${snap.portMapping?.mappings.length ?? 0}`,
    ]),
    ...metric("resolutions_total", "counter", "Public-address resolutions by result.", [
      `{result="ok"} ${pa.resolutions.ok}`,
      `{result="failed"} ${pa.resolutions.failed}`,
    ]),
    ...metric(
      "public_address_info",
      "gauge",
      "The public address announced to remote clients.",
      [`{address="${label(pa.address ?? "")}"} ${pa.address ? 1 : 0}`],
    ),
    ...metric("public_address_changes_total", "counter", "Changes of the public address.", [
      ` ${Math.max(0, pa.history.length - 1)}`,
    ]),
  ];
  return lines.join("\n") + "\n";
}
