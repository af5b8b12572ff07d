/**
 * Helpers around a {@linkcode MappingReport}: which ports a config asks to
 * map, and the report in plain lines for `check` and the log.
 * @module
 */
import { PROTOCOL_NAME } from "./backend.ts";
import type { MappingReport } from "./mapper.ts";

/** The ports to map: the control port, the implicit FTPS port (if any), then the passive range. */
export function portsToMap(
  options: { control: number; implicit?: number | null; min: number; max: number },
): number[] {
  const ports = [options.control];
  if (options.implicit) ports.push(options.implicit);
  for (let p = options.min; p <= options.max; p++) ports.push(p);
  return [...new Set(ports)];
}

/** Collapses sorted ports into "a-b" runs: [1,2,3,7] -> "1-3, 7". */
function runs(ports: number[]): string {
  const out: string[] = [];
  const sorted = [...ports].sort((a, b) => a - b);
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    out.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j;
  }
  return out.join(", ");
}

/** The shortest lease of the mappings, in words. */
function leaseText(r: MappingReport): string {
  const leases = r.mapped.map((m) => m.lifetimeSeconds);
  if (leases.length === 0) return "";
  return leases.every((l) => l === 0) ? ", permanent lease" : `, lease ${Math.min(...leases)} s`;
}

/** The report as lines: which gateway answered, what it mapped, what failed, its WAN address. */
export function describeReport(r: MappingReport): string[] {
  const gw = r.gateway ?? "none";
  if (r.protocol === null) return [`port mapping: no gateway answered: ${r.error}`];
  const via = PROTOCOL_NAME[r.protocol];
  if (r.error !== null && r.mapped.length === 0) {
    return [`port mapping: gateway ${gw} (${via}): ${r.error}`];
  }
  const answered = `port mapping: gateway ${gw} answered over ${via}, WAN address ${
    r.externalAddress ?? "unknown"
  }`;
  if (r.trial) {
    const m = r.mapped[0];
    return [
      answered,
      m
        ? `port mapping: a trial mapping of port ${m.internalPort} was granted` +
          (m.externalPort !== m.internalPort ? ` (on external port ${m.externalPort})` : "") +
          " and removed again"
        : `port mapping: ${r.error}`,
    ];
  }
  const lines = [
    answered,
    `port mapping: mapped ${r.mapped.length} of ${r.requested} TCP ports` +
    (r.mapped.length ? ` (${runs(r.mapped.map((m) => m.internalPort))})` : "") +
    leaseText(r) + (r.skipped ? `; ${r.skipped} more over the cap not asked` : ""),
  ];
  if (r.failed.length) {
    lines.push(
      `port mapping: ${r.failed.length} refused or unanswered: ` +
        r.failed.slice(0, 5).map((f) => `${f.port} (${f.error})`).join(", "),
    );
  }
  for (const d of r.different) {
    lines.push(
      `port mapping: port ${d.internalPort} is reachable on external port ${d.externalPort}`,
    );
  }
  return lines;
}
