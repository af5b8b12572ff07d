/**
 * UPnP-IGD (v1 and v2) as a {@linkcode Backend}: SSDP discovery
 * (M-SEARCH to 239.255.255.250:1900), the device description, the
 * WANIPConnection or WANPPPConnection control URL, and the SOAP actions
 * GetExternalIPAddress, AddPortMapping, GetSpecificPortMappingEntry and
 * DeletePortMapping.
 * @module
 */
import dgram from "node:dgram";
import type { Backend, GatewayState, Granted } from "./backend.ts";

/** The SSDP multicast group and port. */
const SSDP = { address: "239.255.255.250", port: 1900 } as const;
/** What discovery asks for: IGD v2 and v1 devices, and the WAN connection services. */
const SEARCH_TARGETS = [
  "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
  "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
  "urn:schemas-upnp-org:service:WANIPConnection:2",
  "urn:schemas-upnp-org:service:WANIPConnection:1",
  "urn:schemas-upnp-org:service:WANPPPConnection:1",
];
/** The services that can map ports, preferred first. */
const WAN_SERVICES = [
  "urn:schemas-upnp-org:service:WANIPConnection:2",
  "urn:schemas-upnp-org:service:WANIPConnection:1",
  "urn:schemas-upnp-org:service:WANPPPConnection:1",
];
/** The description of the mappings this server makes (shown in the router's UI). */
const DESCRIPTION = "pitifulnat";
/** UPnP error: the entry does not exist. */
const NO_SUCH_ENTRY = 714;
/** UPnP error: only permanent leases (0) are supported. */
const ONLY_PERMANENT = 725;

/** A gateway's WAN connection service, found by {@linkcode discoverIgd}. */
export interface IgdService {
  /** Where the device description was. */
  location: string;
  /** The service type (WANIPConnection:2, :1 or WANPPPConnection:1). */
  serviceType: string;
  /** The absolute control URL for SOAP. */
  controlUrl: string;
}

/** The headers of an SSDP reply, lower-cased names. */
export function parseSsdpReply(text: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of text.split(/\r?\n/).slice(1)) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return headers;
}

/** The M-SEARCH request for one search target. */
function mSearch(st: string): Uint8Array {
  return new TextEncoder().encode(
    `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP.address}:${SSDP.port}\r\n` +
      `MAN: "ssdp:discover"\r\nMX: 2\r\nST: ${st}\r\n\r\n`,
  );
}

/**
 * Multicasts M-SEARCH (twice) and collects the LOCATION of every IGD reply
 * within `timeoutMs`; only from `gateway` when given.
 */
export function ssdpSearch(options: { timeoutMs?: number; gateway?: string }): Promise<string[]> {
  const timeoutMs = options.timeoutMs ?? 2_000;
  return new Promise((resolve) => {
    const found = new Set<string>();
    const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
    const timers: ReturnType<typeof setTimeout>[] = [];
    const finish = () => {
      timers.forEach(clearTimeout);
      try {
        sock.close();
      } catch {
        // Closed already.
      }
      resolve([...found]);
    };
    sock.on("error", finish);
    sock.on("message", (msg, rinfo) => {
      if (options.gateway && rinfo.address !== options.gateway) return;
      const h = parseSsdpReply(new TextDecoder().decode(msg));
      const st = h["st"] ?? h["nt"] ?? "";
      if (h["location"] && /InternetGatewayDevice|WANIPConnection|WANPPPConnection/.test(st)) {
        found.add(h["location"]);
      }
    });
    sock.bind(0, () => {
      const send = () => {
        for (const st of SEARCH_TARGETS) sock.send(mSearch(st), SSDP.port, SSDP.address);
      };
      send();
      timers.push(setTimeout(send, Math.min(500, timeoutMs / 3)));
      timers.push(setTimeout(finish, timeoutMs));
    });
  });
}

/** The text of the first `<name>` element (any namespace prefix) in `xml`, unescaped. */
export function xmlText(xml: string, name: string): string | null {
  const m = xml.match(
    new RegExp(`<(?:[\\w-]+:)?${name}(?:\\s[^>]*)?>([\\s\\S]*?)</(?:[\\w-]+:)?${name}>`),
  );
  if (!m) return null;
  return m[1].trim().replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}

/**
 * The WAN connection service of a device description: the first of
 * {@linkcode WAN_SERVICES} present, with its control URL made absolute
 * (against URLBase, else the description's own URL). Null when none.
 */
export function findWanService(
  xml: string,
  location: string,
): { serviceType: string; controlUrl: string } | null {
  const services = [...xml.matchAll(/<service>([\s\S]*?)<\/service>/g)].map((m) => m[1]);
  const base = xmlText(xml, "URLBase") || location;
  for (const wanted of WAN_SERVICES) {
    for (const s of services) {
      if (xmlText(s, "serviceType") !== wanted) continue;
      const control = xmlText(s, "controlURL");
      if (!control) continue;
      return { serviceType: wanted, controlUrl: new URL(control, base).href };
    }
  }
  return null;
}

/** Fetches with a time limit; the body as text. */
async function fetchText(url: string, init: RequestInit, timeoutMs: number): Promise<Response> {
  return await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
}

/**
 * Finds the gateway's WAN connection service: `location` when given (a
 * known description URL), else by SSDP. Null when no IGD answered.
 */
export async function discoverIgd(
  options: { location?: string; gateway?: string; timeoutMs?: number },
): Promise<IgdService | null> {
  const locations = options.location
    ? [options.location]
    : await ssdpSearch({ gateway: options.gateway, timeoutMs: options.timeoutMs });
  for (const location of locations) {
    try {
      const res = await fetchText(location, {}, options.timeoutMs ?? 3_000);
      const xml = await res.text();
      if (!res.ok) continue;
      const service = findWanService(xml, location);
      if (service) return { location, ...service };
    } catch {
      // The next one.
    }
  }
  return null;
}

/** A SOAP fault: the UPnP error code and description. */
export class UpnpError extends Error {
  override name = "UpnpError";
  constructor(readonly code: number, description: string) {
    super(`UPnP error ${code}: ${description}`);
  }
}

/** The SOAP envelope of one action. */
export function soapEnvelope(
  serviceType: string,
  action: string,
  args: [string, string | number][],
): string {
  const esc = (v: string | number) =>
    String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  return `<?xml version="1.0"?>\r\n` +
    `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ` +
    `s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>` +
    `<u:${action} xmlns:u="${serviceType}">` +
    args.map(([k, v]) => `<${k}>${esc(v)}</${k}>`).join("") +
    `</u:${action}></s:Body></s:Envelope>\r\n`;
}

/** Calls one SOAP action; resolves with the response body, throws {@linkcode UpnpError} on a fault. */
export async function soapCall(
  service: { serviceType: string; controlUrl: string },
  action: string,
  args: [string, string | number][],
  timeoutMs = 5_000,
): Promise<string> {
  const res = await fetchText(service.controlUrl, {
    method: "POST",
    headers: {
      "Content-Type": 'text/xml; charset="utf-8"',
      SOAPAction: `"${service.serviceType}#${action}"`,
    },
    body: soapEnvelope(service.serviceType, action, args),
  }, timeoutMs);
  const body = await res.text();
  if (res.ok) return body;
  const code = Number(xmlText(body, "errorCode"));
  if (Number.isInteger(code) && code > 0) {
    throw new UpnpError(code, xmlText(body, "errorDescription") ?? "");
  }
  throw new Error(`UPnP ${action}: HTTP ${res.status} from ${service.controlUrl}`);
}

/** An error as text. */
function why(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A UPnP-IGD gateway's WAN connection service. */
export class UpnpBackend implements Backend {
  readonly protocol = "upnp";
  readonly gateway: string;
  readonly service: IgdService;
  readonly #internalAddress: string;
  /** Set once the gateway said it only takes permanent leases. */
  #permanentOnly = false;

  constructor(service: IgdService, internalAddress: string) {
    this.service = service;
    this.gateway = new URL(service.controlUrl).hostname;
    this.#internalAddress = internalAddress;
  }

  /**
   * The external address; a restart is the first held port no longer in
   * the gateway's table (UPnP has no epoch).
   */
  async state(held: number[]): Promise<GatewayState> {
    const body = await soapCall(this.service, "GetExternalIPAddress", []);
    const address = xmlText(body, "NewExternalIPAddress") || null;
    let restarted = false;
    if (held.length > 0) {
      try {
        await soapCall(this.service, "GetSpecificPortMappingEntry", [
          ["NewRemoteHost", ""],
          ["NewExternalPort", held[0]],
          ["NewProtocol", "TCP"],
        ]);
      } catch (e) {
        if (!(e instanceof UpnpError) || e.code !== NO_SUCH_ENTRY) throw e;
        restarted = true;
      }
    }
    if (address === null || address === "0.0.0.0") {
      return { address: null, error: "the gateway reports no external address", restarted };
    }
    return { address, restarted };
  }

  /** AddPortMapping, falling back to a permanent lease when the gateway only takes those. */
  async map(internalPort: number, externalPort: number, lease: number): Promise<Granted | string> {
    const add = (duration: number) =>
      soapCall(this.service, "AddPortMapping", [
        ["NewRemoteHost", ""],
        ["NewExternalPort", externalPort],
        ["NewProtocol", "TCP"],
        ["NewInternalPort", internalPort],
        ["NewInternalClient", this.#internalAddress],
        ["NewEnabled", 1],
        ["NewPortMappingDescription", DESCRIPTION],
        ["NewLeaseDuration", duration],
      ]);
    try {
      await add(this.#permanentOnly ? 0 : lease);
    } catch (e) {
      if (!(e instanceof UpnpError)) throw e;
      if (e.code !== ONLY_PERMANENT) return why(e);
      // Requests in flight at once may all get 725: each retries with lease 0.
      this.#permanentOnly = true;
      try {
        await add(0);
      } catch (e2) {
        if (!(e2 instanceof UpnpError)) throw e2;
        return why(e2);
      }
    }
    return { externalPort, lifetime: this.#permanentOnly ? 0 : lease };
  }

  /** DeletePortMapping. */
  async unmap(_internalPort: number, externalPort: number): Promise<string | null> {
    try {
      await soapCall(this.service, "DeletePortMapping", [
        ["NewRemoteHost", ""],
        ["NewExternalPort", externalPort],
        ["NewProtocol", "TCP"],
      ], 3_000);
      return null;
    } catch (e) {
      return why(e);
    }
  }
}
