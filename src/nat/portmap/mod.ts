/**
 * Port mapping on the home router, for the server's control port and
 * passive range: NAT-PMP (RFC 6886), UPnP-IGD (v1/v2) and PCP (RFC 6887, MAP).
 *
 * ```ts
 * const mapper = new PortMapper({ protocol: "auto", ports: [2121, 50000, 50001] });
 * const report = await mapper.start(); // never throws; see report.error
 * await mapper.stop(); // deletes the mappings
 * ```
 * @module
 */
export {
  DEFAULT_LEASE_SECONDS,
  DEFAULT_MAX_MAPPINGS,
  DEFAULT_RETRY_MS,
  DEFAULT_STOP_TIMEOUT_MS,
  type MappingReport,
  PortMapper,
  type PortMapperOptions,
  type PortMapperSnapshot,
  type PortMapping,
  type PortMapProtocol,
} from "./mapper.ts";
export { type Protocol, PROTOCOL_NAME } from "./backend.ts";
export { defaultGateway, localAddressToward, NatPmpClient, NoReplyError } from "./natpmp_client.ts";
export { describeReport, portsToMap } from "./report.ts";
