/**
 * The parts of `pitifulnat check` that look at this machine: ports, the
 * status endpoint, homes, the FTPS certificate, the proxy's upstream, and a
 * server that may already be running.
 * @module
 */
import type { Config } from "../config/schema.ts";
import { dialable, hostPort, withTimeout } from "../ftp/connection.ts";
import { canCreateIn, canList } from "../fs/access.ts";
import { loadTlsIdentity } from "../ftp/tls.ts";
import { unreachableFromInternet } from "../nat/address_kind.ts";
import { describeReport, PROTOCOL_NAME } from "../nat/portmap/mod.ts";
import { probeRange } from "../nat/port_range.ts";
import type { StatusSnapshot } from "../observe/status.ts";
import { connectUpstream } from "../proxy/upstream.ts";
import { CHECK_EXIT, type Report } from "./check_report.ts";
import { portMapperFrom } from "./common.ts";

/** Days before expiry from which `check` warns about the certificate. */
export const CERT_WARN_DAYS = 14;

/** How long `check` waits for a running server's status endpoint or greeting. */
const PROBE_MS = 1500;

/** The running server's status snapshot, when `status.port` is set and it answers. */
export async function findRunningServer(config: Config): Promise<StatusSnapshot | null> {
  const { address, port } = config.status;
  if (!port) return null;
  try {
    const res = await fetch(`http://${hostPort(address, port)}/status`, {
      signal: AbortSignal.timeout(PROBE_MS),
    });
    if (!res.ok) return null;
    const snap = await res.json() as StatusSnapshot;
    return typeof snap?.publicAddress === "object" ? snap : null;
  } catch {
    return null;
  }
}

/** The first port a process without privileges may bind (Linux; 1024 elsewhere). */
function unprivilegedPortStart(): number {
  try {
    const n = Number(Deno.readTextFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start"));
    return Number.isInteger(n) ? n : 1024;
  } catch {
    return 1024;
  }
}

/** The kernel's ephemeral port range (outgoing connections), when it can be read. */
function ephemeralRange(): [number, number] | null {
  try {
    const [lo, hi] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range")
      .trim().split(/\s+/).map(Number);
    return Number.isInteger(lo) && Number.isInteger(hi) ? [lo, hi] : null;
  } catch {
    return null;
  }
}

/** What a bind failure means, in plain words. */
function bindFailure(e: unknown, port: number): string {
  if (e instanceof Deno.errors.PermissionDenied && port < unprivilegedPortStart()) {
    return `port ${port} needs privileges this process does not have: give the program ` +
      `CAP_NET_BIND_SERVICE (AmbientCapabilities in the systemd unit), or listen on a port ` +
      `from ${unprivilegedPortStart()} up and forward the router's port to it`;
  }
  return (e as Error).message;
}

/** The first line a server greets with, or null when it does not greet in time. */
async function greetingOf(address: string, port: number): Promise<string | null> {
  let conn: Deno.TcpConn | null = null;
  try {
    conn = await Deno.connect({ hostname: dialable(address), port });
    const buf = new Uint8Array(512);
    const n = await withTimeout(conn.read(buf), PROBE_MS);
    if (typeof n !== "number") return null;
    return new TextDecoder().decode(buf.subarray(0, n)).split("\r\n")[0];
  } catch {
    return null;
  } finally {
    try {
      conn?.close();
    } catch { /* already closed */ }
  }
}

/**
 * A port that is in use: fine when pitifulnat holds it (its status answers,
 * or it greets with this config's banner), a problem otherwise. True when
 * pitifulnat holds it.
 */
async function portInUse(
  config: Config,
  options: { label: string; address: string; port: number; running: boolean; report: Report },
): Promise<boolean> {
  const { label, address, port, report } = options;
  const at = hostPort(address, port);
  if (options.running) {
    report.out.push(`${label} ${at}: in use by the running server`);
    return true;
  }
  const greeting = await greetingOf(address, port);
  if (greeting?.includes(config.banner)) {
    report.out.push(`${label} ${at}: in use by a running pitifulnat (it greets "${greeting}")`);
    return true;
  }
  report.problems.push({
    code: CHECK_EXIT.ports,
    text: `${label} ${at} is in use by another program` +
      (greeting ? ` (it greets "${greeting.slice(0, 80)}")` : "") +
      `: stop it, or choose another port`,
  });
  return false;
}

/**
 * Binds one port: reports it, or why it cannot be used. Says whether it
 * was free, is held by a running pitifulnat, or neither.
 */
async function checkBind(
  config: Config,
  options: { label: string; address: string; port: number; running: boolean; report: Report },
): Promise<"free" | "pitifulnat" | "unusable"> {
  const { label, address, port, report } = options;
  try {
    Deno.listen({ hostname: address, port }).close();
    report.out.push(`${label} ${hostPort(address, port)}: can be bound`);
    return "free";
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      return await portInUse(config, options) ? "pitifulnat" : "unusable";
    }
    report.problems.push({
      code: CHECK_EXIT.ports,
      text: `${label} ${hostPort(address, port)} cannot be bound: ${bindFailure(e, port)}`,
    });
  }
  return "unusable";
}

/**
 * Reports whether the control port, the implicit-FTPS port and the
 * passive range can be bound, and what the router must forward to `local`.
 * Returns whether the control port was free (nothing, no server, holds it).
 */
export async function checkPorts(
  config: Config,
  options: { local: string; running: boolean; report: Report },
): Promise<{ controlFree: boolean }> {
  const { report, running } = options;
  const { address, port } = config.listen;
  const control = await checkBind(config, {
    label: "control port",
    address,
    port,
    running,
    report,
  });
  const held = control === "pitifulnat";
  const controlFree = control === "free";
  const implicit = config.tls?.implicit_port;
  if (implicit) {
    // It speaks TLS first, so no greeting: held by the server that holds the control port.
    await checkBind(config, {
      label: "implicit FTPS port",
      address,
      port: implicit,
      running: running || held,
      report,
    });
  }
  const { min_port, max_port } = config.passive;
  for (const [what, p] of [["control port", port], ["implicit FTPS port", implicit]] as const) {
    if (p && p >= min_port && p <= max_port) {
      report.problems.push({
        code: CHECK_EXIT.ports,
        text: `the passive range ${min_port}-${max_port} holds the ${what} ${p}: move one of them`,
      });
    }
  }
  const probe = await probeRange({ hostname: address, min: min_port, max: max_port });
  report.out.push(
    `passive ports ${min_port}-${max_port}: ${probe.bindable} of ${probe.tried} tried can be ` +
      `bound` + (probe.failed.length ? ` (busy: ${probe.failed.slice(0, 10).join(", ")})` : ""),
  );
  if (probe.bindable === 0) {
    report.problems.push({
      code: CHECK_EXIT.ports,
      text: `no passive port in ${min_port}-${max_port} can be bound`,
    });
  }
  const ephemeral = ephemeralRange();
  if (ephemeral && min_port <= ephemeral[1] && max_port >= ephemeral[0]) {
    report.warnings.push(
      `the passive range ${min_port}-${max_port} overlaps the system's ephemeral ports ` +
        `${ephemeral[0]}-${ephemeral[1]} (outgoing connections may take some of them); ` +
        `reserve them with sysctl net.ipv4.ip_local_reserved_ports=${min_port}-${max_port}`,
    );
  }
  // No forward can reach a loopback listener (checkListen says so).
  const loopback = /^(127\.|::1$)/.test(options.local);
  if (!config.public_address || loopback) return { controlFree };
  const ports = `TCP ${implicit ? `${port}, ${implicit}` : port} and ${min_port}-${max_port}`;
  const mapping = config.port_mapping?.protocol ?? "off";
  report.out.push(
    mapping !== "off"
      ? `router: port_mapping (${mapping}) asks the router for ${ports}: no forwarding by hand`
      : options.local.includes(":")
      ? `router: allow inbound ${ports} to this machine (${options.local}); IPv6 needs no NAT`
      : `router: forward ${ports} to this machine (${options.local})`,
  );
  return { controlFree };
}

/**
 * The status endpoint's port must be free (or held by the running server):
 * a server that cannot bind it runs without status.
 */
export function checkStatusPort(
  config: Config,
  options: { running: boolean; report: Report },
): void {
  const { address, port } = config.status;
  if (!port) return;
  const at = hostPort(address, port);
  if (options.running) {
    options.report.out.push(`status port ${at}: in use by the running server`);
    return;
  }
  try {
    Deno.listen({ hostname: address, port }).close();
    options.report.out.push(`status port ${at}: can be bound`);
  } catch (e) {
    const why = e instanceof Deno.errors.AddrInUse
      ? "in use by another program"
      : bindFailure(e, port);
    options.report.problems.push({
      code: CHECK_EXIT.statusPort,
      text: `status port ${at} (status.port) cannot be bound: ${why}`,
    });
  }
}

/** Why a home cannot serve the permissions it is given, or null when it can. */
async function homeProblem(home: string, permissions: readonly string[]): Promise<string | null> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(home);
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? "does not exist" : (e as Error).message;
  }
  if (!info.isDirectory) return "is not a directory";
  if (!canList(home)) {
    return "is not readable by this user";
  }
  const writes = permissions.some((p) => p !== "read");
  if (writes && !canCreateIn(home)) {
    return `is not writable by this user, but the permissions (${permissions.join(", ")}) ` +
      `need it`;
  }
  return null;
}

/** Every home must exist and allow what its permissions promise; somebody must be able to log in. */
export async function checkHomes(config: Config, report: Report): Promise<void> {
  const { users, anonymous } = config;
  if (users.length === 0 && !anonymous.enabled) {
    report.problems.push({
      code: CHECK_EXIT.noLogin,
      text: "nobody can log in: there are no users and anonymous is off; add a user " +
        "(pitifulnat hash-password makes the password hash) or set anonymous.enabled",
    });
  }
  const homes = users.map((u) => ({ who: `user ${u.name}`, home: u.home, perms: u.permissions }));
  if (anonymous.enabled && anonymous.home) {
    homes.push({ who: "anonymous", home: anonymous.home, perms: anonymous.permissions });
  }
  for (const { who, home, perms } of homes) {
    const problem = await homeProblem(home, perms);
    if (problem) {
      report.problems.push({
        code: CHECK_EXIT.home,
        text: `the home of ${who}, ${home}, ${problem}`,
      });
    }
  }
  if (homes.length) report.out.push(`homes: ${homes.length} checked`);
}

/** Whether a certificate name (`*.example.net` allowed) covers `host`. */
export function certificateCovers(name: string, host: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, "");
  const h = host.toLowerCase().replace(/\.$/, "");
  if (!n.startsWith("*.")) return n === h;
  const dot = h.indexOf(".");
  return dot > 0 && h.slice(dot + 1) === n.slice(2);
}

/**
 * FTPS: the certificate's subject, names, issuer and expiry; a warning
 * under 14 days left; a problem when expired or when the public name is
 * not among its names (clients that verify would refuse it).
 */
export function checkCertificate(config: Config, options: { report: Report; now: Date }): void {
  const { out, problems, warnings } = options.report;
  if (!config.tls) {
    out.push("FTPS: not configured (tls in the config): logins and files travel in clear");
    return;
  }
  const id = loadTlsIdentity(config.tls);
  const days = Math.floor((id.validTo.getTime() - options.now.getTime()) / 86_400_000);
  out.push(
    `FTPS certificate ${config.tls.certificate}: subject ${id.subject}; names ` +
      `${id.names.join(", ") || "(none)"}; issuer ${id.issuer}; expires ` +
      `${id.validTo.toISOString().slice(0, 10)} (${days} days left); TLS required: ` +
      config.tls.required,
  );
  const code = CHECK_EXIT.certificate;
  if (days < 0) {
    problems.push({ code, text: `the certificate ${config.tls.certificate} has expired` });
  } else if (days < CERT_WARN_DAYS) {
    warnings.push(`the certificate expires in ${days} days; renew it, then send SIGHUP`);
  }
  const host = config.public_address?.host;
  if (host && !id.names.some((n) => certificateCovers(n, host))) {
    problems.push({
      code,
      text: `the certificate is not valid for ${host} (its names: ` +
        `${id.names.join(", ") || "none"}): clients that check certificates will refuse it`,
    });
  }
}

/** Proxy mode: reports whether the upstream server answers and accepts sessions. */
export async function checkUpstream(config: Config, report: Report): Promise<void> {
  if (!config.proxy) return;
  const { host, port } = config.proxy.upstream;
  const label = hostPort(host, port);
  const timeoutMs = config.proxy.connect_timeout_seconds * 1000;
  const code = CHECK_EXIT.upstream;
  try {
    const { control, greeting } = await connectUpstream({ host, port }, { timeoutMs });
    control.close();
    const last = greeting[greeting.length - 1];
    const banner = greeting.flatMap((r) => r.lines).join(" / ");
    report.out.push(`proxy upstream ${label} (${control.host}): ${banner}`);
    if (last.code !== 220) {
      report.problems.push({ code, text: `upstream ${label} refuses sessions: ${last.lines[0]}` });
    }
  } catch (e) {
    report.problems.push({
      code,
      text: `proxy upstream ${label} unreachable: ${(e as Error).message}`,
    });
  }
}

/** What the running server's port mapper holds, and its last error (exit 13). */
function reportRunningMappings(
  pm: NonNullable<StatusSnapshot["portMapping"]>,
  report: Report,
): void {
  const via = pm.protocol ? PROTOCOL_NAME[pm.protocol] : "no protocol answered";
  report.out.push(
    `running server: port mapping on ${pm.gateway ?? "no gateway"} (${via}): ` +
      `${pm.mappings.length} mappings held, ${pm.rounds} rounds, next ${pm.nextRoundAt ?? "-"}` +
      (pm.lastError ? `; last round failed: ${pm.lastError}` : ""),
  );
  if (pm.lastError) {
    report.problems.push({
      code: CHECK_EXIT.portMapping,
      text: `the running server's port mapping fails: ${pm.lastError}` +
        (pm.mappings.length ? ` (it still lists ${pm.mappings.length} mappings)` : ""),
    });
  } else if (pm.failed.length > 0) {
    report.warnings.push(
      `the router refused ${pm.failed.length} of the running server's ports: ` +
        pm.failed.slice(0, 5).map((f) => `${f.port} (${f.error})`).join(", "),
    );
  }
}

/**
 * port_mapping: which gateway answers, over which protocol, and the WAN
 * address it reports (mapping nothing: a running server may hold the
 * mappings). A router whose own WAN address the internet cannot reach
 * (private, CGNAT) means no forward on it can work; a WAN address the
 * public name does not resolve to means a stale dynamic-DNS record.
 */
export async function checkPortMapping(
  config: Config,
  options: {
    publicAddress: string | null;
    report: Report;
    running: StatusSnapshot | null;
    /** Nothing holds the control port (checkPorts): a trial mapping disturbs no server. */
    controlFree: boolean;
  },
): Promise<void> {
  const mapper = portMapperFrom(config);
  if (!mapper) return;
  const { report } = options;
  const held = options.running?.portMapping;
  if (held) reportRunningMappings(held, report);
  // A trial mapping shows whether the router grants any, but it must not
  // remove a running server's: only while the control port is free here.
  const free = !options.running && options.controlFree;
  const probe = await mapper.probe(free ? { tryPort: config.listen.port } : {});
  report.out.push(...describeReport(probe));
  if (probe.protocol === null || probe.error !== null) {
    report.problems.push({
      code: CHECK_EXIT.portMapping,
      text:
        `port_mapping is ${config.port_mapping!.protocol}, but ${
          probe.error ?? "no gateway answered"
        }: turn UPnP or NAT-PMP on in the router, or forward the ports by hand and set ` +
        `port_mapping.protocol: off`,
    });
    return;
  }
  const wan = probe.externalAddress;
  const bad = wan === null ? null : unreachableFromInternet(wan);
  if (bad) {
    report.problems.push({
      code: CHECK_EXIT.publicAddress,
      text: `the router's own WAN address is ${bad.text}: no forward on this router can make ` +
        `the server reachable`,
    });
  } else if (wan && options.publicAddress && wan !== options.publicAddress) {
    const url = config.public_address?.from === "http" ? config.public_address.url : undefined;
    report.warnings.push(
      url
        ? `the router reports the WAN address ${wan}, but ${url} answers ` +
          `${options.publicAddress}: the router is not the one facing the internet (or the ` +
          `service sees another way out)`
        : `the router reports the WAN address ${wan}, but the public address is ` +
          `${options.publicAddress}: the dynamic-DNS record is stale (or the router is not the ` +
          `one facing the internet)`,
    );
  }
}
