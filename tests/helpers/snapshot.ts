/**
 * Status snapshots for tests of the page and the terminal rendering: a
 * fresh server's, and a busy one's, as of a given time.
 * @module
 */
import {
  type PublicAddressStatus,
  SNAPSHOT_SCHEMA,
  type StatusSnapshot,
} from "../../src/observe/snapshot.ts";

/** Builds snapshots as of `now` (an ISO time). */
export function snapshots(now: string) {
  /** Seconds before `now` as an ISO time. */
  const ago = (seconds: number) => new Date(Date.parse(now) - seconds * 1000).toISOString();
  /** A fresh server's snapshot (no sessions, no history), with `patch` applied on top. */
  const snapshot = (patch: Partial<StatusSnapshot> = {}): StatusSnapshot => {
    return {
      schema: SNAPSHOT_SCHEMA,
      version: "0.1.0",
      mode: "serve",
      now,
      startedAt: ago(5),
      uptimeSeconds: 5,
      listen: "0.0.0.0:2121",
      ftps: { enabled: false },
      publicAddress: {
        source: "none",
        host: null,
        address: null,
        dnsServer: "none",
        resolvedAt: null,
        nextRefreshAt: null,
        lastError: null,
        lastErrorRaw: null,
        lastErrorAt: null,
        consecutiveFailures: 0,
        failingSince: null,
        resolutions: { ok: 0, failed: 0 },
        history: [],
        unreachable: null,
      },
      told: {
        remote: { address: "192.168.1.10", reason: "no public address configured" },
        lan: { address: "192.168.1.10", reason: "the client is on the LAN" },
      },
      passive: { min: 50000, max: 50100, inUse: [] },
      portMapping: null,
      sessions: [],
      recentTransfers: [],
      loginFailures: [],
      bans: [],
      throughput: { intervalSeconds: 10, points: [] },
      stats: { loginsOk: 0, loginsFailed: 0, bytesIn: 0, bytesOut: 0, transfers: 0 },
      ...patch,
    };
  };

  /** A public address resolved from DNS with no trouble, with `patch` applied on top. */
  const dnsAddress = (patch: Partial<PublicAddressStatus> = {}): PublicAddressStatus => {
    return {
      source: "dns",
      host: "myhome.example.net",
      address: "5.6.7.8",
      dnsServer: "9.9.9.9:53",
      resolvedAt: ago(20),
      nextRefreshAt: ago(-40),
      lastError: null,
      lastErrorRaw: null,
      lastErrorAt: null,
      consecutiveFailures: 0,
      failingSince: null,
      resolutions: { ok: 12, failed: 1 },
      history: [
        { at: ago(3000), from: null, to: "1.2.3.4" },
        { at: ago(600), from: "1.2.3.4", to: "5.6.7.8" },
      ],
      unreachable: null,
      ...patch,
    };
  };

  /** A server with two sessions (one downloading a file of known size), history and traffic. */
  const busySnapshot = (): StatusSnapshot => {
    return snapshot({
      mode: "serve",
      uptimeSeconds: 3 * 3600 + 12 * 60,
      startedAt: ago(3 * 3600 + 12 * 60),
      ftps: { enabled: true, required: "login", implicitPort: 990 },
      publicAddress: dnsAddress(),
      told: {
        remote: { address: "5.6.7.8", reason: "public address from myhome.example.net" },
        lan: { address: "192.168.1.10", reason: "the client is on the LAN" },
      },
      passive: { min: 50000, max: 50100, inUse: [50007, 50003] },
      sessions: [
        {
          id: "s1",
          peer: "203.0.113.5:40001",
          user: "alice",
          since: ago(900),
          idleSeconds: 3,
          tls: { control: true, data: true },
          transfer: {
            verb: "RETR",
            path: "/films/holiday.mkv",
            direction: "out",
            bytes: 250_000_000,
            size: 1_000_000_000,
            startedAt: ago(100),
            rate: 2_500_000,
          },
        },
        {
          id: "s2",
          peer: "[2001:db8::7]:50123",
          user: null,
          since: ago(45),
          idleSeconds: 45,
          tls: { control: false, data: false },
          transfer: null,
        },
      ],
      recentTransfers: Array.from({ length: 50 }, (_, i) => ({
        at: ago(60 * (50 - i)),
        peer: "203.0.113.5:40001",
        user: "alice",
        verb: i % 2 ? "STOR" : "RETR",
        path: `/photos/2024/img_${1000 + i}.jpg`,
        direction: i % 2 ? "in" as const : "out" as const,
        bytes: 3_400_000 + i * 1000,
        seconds: 2 + i / 10,
        result: i % 10 === 9 ? "aborted" : "ok",
      })),
      loginFailures: Array.from({ length: 50 }, (_, i) => ({
        at: ago(30 * (50 - i)),
        addr: `198.51.100.${i}`,
        user: i % 2 ? "admin" : "root",
      })),
      bans: [{ addr: "198.51.100.7", secondsLeft: 1500 }],
      throughput: {
        intervalSeconds: 10,
        points: Array.from({ length: 360 }, (_, i) => ({
          at: ago(10 * (359 - i)),
          in: (i % 60) * 100_000,
          out: 25_000_000 + (i % 7) * 1_000_000,
        })),
      },
      stats: {
        loginsOk: 14,
        loginsFailed: 50,
        bytesIn: 85_000_000,
        bytesOut: 12_300_000_000,
        transfers: 51,
      },
    });
  };
  return { ago, snapshot, dnsAddress, busySnapshot };
}
