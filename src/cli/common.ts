/**
 * Pieces every command shares: finding and loading the config, and
 * building the public-address refresher from it.
 * @module
 */
import { DEFAULT_CONFIG_YAML, makeDemoDir } from "../config/default.ts";
import { ConfigError, loadConfig, parseConfig } from "../config/load.ts";
import { locateConfig, missingMessage } from "../config/locate.ts";
import { type Config, parseDnsServer } from "../config/schema.ts";
import { PortMapper, portsToMap } from "../nat/portmap/mod.ts";
import { PublicAddress } from "../nat/public_address.ts";
import { HTTP_SOURCE_LABEL, httpAddressResolver } from "../nat/http_address.ts";

/** A loaded config and where it came from. */
export interface Loaded {
  config: Config;
  /** The file, or null for the embedded demo default. */
  file: string | null;
  /** The demo directory when running on the embedded default. */
  demoDir?: string;
}

/**
 * Loads the config named on the command line (or found by lookup). With
 * `allowDefault`, a missing config falls back to the embedded demo. Prints
 * the problem and returns null on failure.
 */
export async function loadFromCli(
  flag: string | undefined,
  options: { allowDefault: boolean },
): Promise<Loaded | null> {
  const located = locateConfig(flag);
  try {
    if (located.path) return { config: await loadConfig(located.path), file: located.path };
    if (located.explicit || !options.allowDefault) {
      console.error(missingMessage(located));
      return null;
    }
    const demoDir = await makeDemoDir();
    const text = DEFAULT_CONFIG_YAML.replace("HOME", JSON.stringify(demoDir));
    return { config: parseConfig(text, { file: "(embedded default)" }), file: null, demoDir };
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(e.message);
      return null;
    }
    throw e;
  }
}

/**
 * Builds the public-address refresher the config describes. With
 * `from: router`, its "lookups" ask `mapper` (the router over port_mapping)
 * for the WAN address; with `from: http`, they GET `url` and read the
 * address from its answer. Both on the same schedule and with the same
 * last-good and back-off rules as DNS, and re-asked early on a hint.
 */
export function publicAddressFrom(
  config: Config,
  mapper?: PortMapper | null,
): PublicAddress | null {
  const pa = config.public_address;
  if (!pa) return null;
  const common = { refreshMs: pa.refresh_seconds * 1000, ipv6: pa.ipv6 };
  if (pa.from === "router") {
    const router = mapper ?? portMapperFrom(config);
    if (!router) return null;
    return new PublicAddress({
      ...common,
      host: "router",
      label: `port_mapping (${config.port_mapping!.protocol})`,
      resolver: async () => {
        const probe = await router.probe();
        if (!probe.externalAddress) {
          throw new Error(probe.error ?? "the router reports no WAN address");
        }
        return [probe.externalAddress];
      },
    });
  }
  if (pa.from === "http") {
    if (!pa.url) return null; // refused by the schema
    return new PublicAddress({
      ...common,
      // The URL itself: the URL's host may be an IP literal, which would mean "fixed".
      host: pa.url,
      label: HTTP_SOURCE_LABEL,
      resolver: httpAddressResolver(pa.url),
    });
  }
  return new PublicAddress({
    ...common,
    host: pa.host,
    address: pa.address,
    dnsServer: pa.dns_server ? parseDnsServer(pa.dns_server) : undefined,
  });
}

/** The router port mapper the config asks for, or null (off by default). */
export function portMapperFrom(config: Config): PortMapper | null {
  const pm = config.port_mapping;
  if (!pm || pm.protocol === "off") return null;
  const listen = config.listen.address;
  const any = listen === "0.0.0.0" || listen === "::";
  return new PortMapper({
    protocol: pm.protocol,
    gateway: pm.gateway,
    internalAddress: pm.internal_address ?? (any ? undefined : listen),
    ports: portsToMap({
      control: config.listen.port,
      implicit: config.tls?.implicit_port,
      min: config.passive.min_port,
      max: config.passive.max_port,
    }),
    leaseSeconds: pm.lease_seconds,
    maxMappings: pm.max_mappings,
    upnpLocation: pm.upnp_location,
  });
}
