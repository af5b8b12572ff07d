/**
 * The passive port range: the ports the router forwards to the server.
 * Passive listeners must come from it, or remote clients cannot connect.
 *
 * @module
 */

/** Options of {@linkcode listenInRange}. */
export interface ListenInRangeOptions {
  /** Local address to bind ("0.0.0.0", "::", or the control connection's local address). */
  hostname: string;
  /** First port of the range (inclusive). */
  min: number;
  /** Last port of the range (inclusive). */
  max: number;
  /** Source of the starting offset in [0, 1); default `Math.random`. */
  random?: () => number;
  /** Only ports this accepts are tried (the ones the router forwards); default all. */
  accept?: (port: number) => boolean;
}

/** Options of {@linkcode probeRange}. */
export interface ProbeRangeOptions {
  /** Local address to bind. */
  hostname: string;
  /** First port of the range (inclusive). */
  min: number;
  /** Last port of the range (inclusive). */
  max: number;
  /** Probe only this many ports, spread evenly over the range (ends included). */
  sample?: number;
}

/** Outcome of {@linkcode probeRange}. */
export interface ProbeResult {
  /** Ports tried. */
  tried: number;
  /** Ports that could be bound. */
  bindable: number;
  /** Ports that could not be bound (in use, or not permitted), ascending. */
  failed: number[];
}

function checkBounds(min: number, max: number): void {
  for (const [name, value] of [["min", min], ["max", max]] as const) {
    if (!Number.isInteger(value) || value < 1 || value > 65535) {
      throw new RangeError(`port range: ${name} must be an integer 1-65535 (got ${value})`);
    }
  }
  if (min > max) {
    throw new RangeError(`port range: min ${min} is above max ${max}`);
  }
}

/**
 * Listen on a free port of the range. Starts at a random port, so that
 * concurrent sessions do not race for the same one and ports are not
 * predictable, then walks the range (wrapping) and tries each port at most
 * once: the loop is bounded by the range's size.
 *
 * @returns the listener, or null when every port is in use (AddrInUse).
 * @throws {RangeError} on a bad range; other bind errors (permission, an
 * address that is not local) propagate, since no other port would fare better.
 */
export function listenInRange(options: ListenInRangeOptions): Promise<Deno.TcpListener | null> {
  // Deno.listen is synchronous; the promise turns any throw into a rejection.
  return new Promise((resolve) => resolve(listenSync(options)));
}

function listenSync(options: ListenInRangeOptions): Deno.TcpListener | null {
  const { hostname, min, max, accept } = options;
  checkBounds(min, max);
  const count = max - min + 1;
  const r = (options.random ?? Math.random)();
  const start = Math.min(count - 1, Math.max(0, Math.floor(r * count)));
  for (let i = 0; i < count; i++) {
    const port = min + ((start + i) % count);
    if (accept && !accept(port)) continue;
    try {
      return Deno.listen({ hostname, port, transport: "tcp" });
    } catch (err) {
      if (!(err instanceof Deno.errors.AddrInUse)) throw err;
    }
  }
  return null;
}

/**
 * Operator check: bind and immediately close each port of the range (or an
 * evenly spread `sample` of it) and report which could not be bound. Ports in
 * use by our own running server count as failed, so run it before starting.
 *
 * @throws {RangeError} on a bad range or sample; bind errors other than
 * AddrInUse and PermissionDenied (such as a hostname that is not a local
 * address) propagate, since they say nothing about single ports.
 */
export function probeRange(options: ProbeRangeOptions): Promise<ProbeResult> {
  return new Promise((resolve) => resolve(probeSync(options)));
}

function probeSync(options: ProbeRangeOptions): ProbeResult {
  const { hostname, min, max, sample } = options;
  checkBounds(min, max);
  const count = max - min + 1;
  if (sample !== undefined && (!Number.isInteger(sample) || sample < 1)) {
    throw new RangeError(`port range: sample must be a positive integer (got ${sample})`);
  }
  const ports: number[] = [];
  if (sample === undefined || sample >= count) {
    for (let p = min; p <= max; p++) ports.push(p);
  } else if (sample === 1) {
    ports.push(min);
  } else {
    for (let i = 0; i < sample; i++) {
      ports.push(min + Math.round((i * (count - 1)) / (sample - 1)));
    }
  }
  const failed: number[] = [];
  let bindable = 0;
  for (const port of ports) {
    try {
      Deno.listen({ hostname, port, transport: "tcp" }).close();
      bindable++;
    } catch (err) {
      if (err instanceof Deno.errors.AddrInUse || err instanceof Deno.errors.PermissionDenied) {
        failed.push(port);
        continue;
      }
      throw err;
    }
  }
  return { tried: ports.length, bindable, failed };
}
