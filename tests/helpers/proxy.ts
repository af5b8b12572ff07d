/**
 * An in-process `pitifulnat proxy` on a free loopback port, for the proxy
 * tests in front of scripted and real upstream servers.
 */
import { type Config, configSchema } from "../../src/config/schema.ts";
import type { PublicAddress } from "../../src/nat/public_address.ts";
import { ProxyServer } from "../../src/proxy/server.ts";

/** A started test proxy. */
export interface TestProxy {
  proxy: ProxyServer;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Starts a proxy in front of 127.0.0.1:`upstreamPort` with its passive range. */
export function startProxy(
  upstreamPort: number,
  options: {
    passive: { min: number; max: number };
    connectTimeoutSeconds: number;
    tweak?: (c: Config) => void;
    publicAddress?: PublicAddress;
  },
): TestProxy {
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
  const proxy = new ProxyServer(config, { publicAddress: options.publicAddress ?? null });
  const port = proxy.listen().port;
  return { proxy, port, url: `ftp://127.0.0.1:${port}`, close: () => proxy.close() };
}
