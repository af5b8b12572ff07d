/**
 * Runs a {@linkcode PortMapper} on its own, for the port-mapping lab test
 * (until the server starts one itself): maps the ports given, prints one
 * `ROUND {json}` line per round, and on SIGTERM deletes the mappings,
 * prints `STOPPED` and exits.
 *
 *     deno run -A tests/tools/portmap_agent.ts GATEWAY INTERNAL LEASE PORTS [PROTOCOL [MAX]]
 *
 * PORTS is a comma list of ports and ranges (2121,50000-50020); PROTOCOL is
 * natpmp (the default), upnp, pcp or auto; INTERNAL "-" lets the mapper find
 * this machine's address toward the gateway.
 * @module
 */
import { configure, getConsoleSink } from "@logtape/logtape";
import { PortMapper, type PortMapProtocol } from "../../src/nat/portmap/mod.ts";

/** "2121,50000-50002" -> [2121, 50000, 50001, 50002]. */
function parsePorts(text: string): number[] {
  const out: number[] = [];
  for (const part of text.split(",")) {
    const [lo, hi] = part.split("-").map(Number);
    for (let p = lo; p <= (hi ?? lo); p++) out.push(p);
  }
  return out;
}

await configure({
  sinks: { console: getConsoleSink() },
  loggers: [
    { category: ["pitifulnat"], sinks: ["console"], lowestLevel: "debug" },
    { category: ["logtape", "meta"], sinks: [], lowestLevel: "error" },
  ],
});
const [gateway, internalAddress, lease, ports, protocol, max] = Deno.args;
const mapper = new PortMapper({
  protocol: (protocol ?? "natpmp") as PortMapProtocol,
  gateway,
  internalAddress: internalAddress === "-" ? undefined : internalAddress,
  ports: parsePorts(ports),
  leaseSeconds: Number(lease),
  maxMappings: max ? Number(max) : undefined,
  retryMs: 2_000,
  onRound: (report) => console.log(`ROUND ${JSON.stringify(report)}`),
});
// The mapper's timers never keep a process alive: this one does, until SIGTERM.
const keepAlive = setInterval(() => {}, 3_600_000);
const stopped = Promise.withResolvers<void>();
Deno.addSignalListener("SIGTERM", () => stopped.resolve());
await mapper.start();
await stopped.promise;
await mapper.stop();
console.log(`STOPPED ${JSON.stringify(mapper.snapshot())}`);
clearInterval(keepAlive);
Deno.exit(0);
