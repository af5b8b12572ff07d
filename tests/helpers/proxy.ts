/**
 * An in-process `pitifulnat proxy` on a free loopback port, for the proxy
 * tests in front of scripted and real upstream servers.
 */
import { type Config, configSchema } from "../../src/config/schema.ts";
import type { PublicAddress } from "../../src/nat/public_address.ts";
import type { RouterPorts } from "../../src/ftp/data_setup.ts";
import { ProxyServer } from "../../src/proxy/server.ts";

/** A started test proxy. */
export interface TestProxy {
  proxy: ProxyServer;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** How a test proxy is set up. */
export interface TestProxyOptions {
  passive: { min: number; max: number };
  connectTimeoutSeconds: number;
  tweak?: (c: Config) => void;
  publicAddress?: PublicAddress;
  /** The router's port mappings, as port_mapping would give them. */
  routerPorts?: RouterPorts;
}

/** The test proxy's server, not yet listening. */
function makeProxy(upstreamPort: number, options: TestProxyOptions): ProxyServer {
  const config = configSchema.parse({
    listen: { address: "127.0.0.1", port: 2121 },
    passive: { min_port: options.passive.min, max_port: options.passive.max },
    log: { level: "error" },
    limits: { data_timeout_seconds: 10 },
    proxy: {
      upstream: { host: "127.0.0.1", port: upstreamPort },
      connect_timeout_seconds: options.connectTimeoutSeconds,
    },
  });
  config.listen.port = 0;
  options.tweak?.(config);
  return new ProxyServer(config, {
    publicAddress: options.publicAddress ?? null,
    routerPorts: options.routerPorts,
  });
}

/** Starts a proxy in front of 127.0.0.1:`upstreamPort` with its passive range. */
export function startProxy(upstreamPort: number, options: TestProxyOptions): TestProxy {
  const proxy = makeProxy(upstreamPort, options);
  const port = proxy.listen().port;
  return { proxy, port, url: `ftp://127.0.0.1:${port}`, close: () => proxy.close() };
}

/** {@linkcode startProxy} for a config with `tls` (whose listeners start asynchronously). */
export async function startFtpsProxy(
  upstreamPort: number,
  options: TestProxyOptions,
): Promise<TestProxy> {
  const proxy = makeProxy(upstreamPort, options);
  const port = (await proxy.start()).port;
  return { proxy, port, url: `ftp://127.0.0.1:${port}`, close: () => proxy.close() };
}
