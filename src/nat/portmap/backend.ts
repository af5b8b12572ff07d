/**
 * What the port mapper needs from a protocol (NAT-PMP, UPnP-IGD): the
 * gateway's external address (and whether it lost its mappings since the
 * last ask), adding a mapping and removing one.
 * @module
 */

/** The protocols a mapping can be made with. */
export type Protocol = "natpmp" | "pcp" | "upnp";

/** The protocols' names in messages. */
export const PROTOCOL_NAME: Record<Protocol, string> = {
  natpmp: "NAT-PMP",
  pcp: "PCP",
  upnp: "UPnP-IGD",
};

/** The gateway's answer about itself. */
export interface GatewayState {
  /** The WAN address it reports, or null when it has none. */
  address: string | null;
  /** Why there is no address, when there is none. */
  error?: string;
  /** Whether it lost its mappings since the last ask (a reboot). */
  restarted: boolean;
  /** The address comes with the mappings (PCP): a null address is no error yet. */
  deferred?: boolean;
}

/** A mapping the gateway granted. */
export interface Granted {
  /** The external port it chose. */
  externalPort: number;
  /** Seconds granted; 0 means "until removed" (UPnP permanent leases). */
  lifetime: number;
  /** The external address the reply named (PCP), if any. */
  externalAddress?: string;
}

/** One protocol's view of one gateway. Every method throws (an Error) on no answer. */
export interface Backend {
  /** Which protocol this is. */
  readonly protocol: Protocol;
  /** The gateway, as shown to the user (an address, or a control URL's host). */
  readonly gateway: string;
  /** Asks for the external address; `held` lists the internal ports the mapper believes mapped. */
  state(held: number[]): Promise<GatewayState>;
  /** Maps TCP `internalPort` (asking for `externalPort`) for `lease` seconds; a string is a refusal. */
  map(internalPort: number, externalPort: number, lease: number): Promise<Granted | string>;
  /** Removes the mapping; null on success, else why not. */
  unmap(internalPort: number, externalPort: number): Promise<string | null>;
}
