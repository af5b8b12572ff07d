/**
 * What `pitifulnat check` reports: its exit codes, one per cause, and the
 * report the checks fill in.
 * @module
 */

/**
 * Exit codes of `check`, one per cause. With several causes, the lowest
 * code wins (the README's "Behind a router" section lists them).
 */
export const CHECK_EXIT = {
  /** All is well (for the internet, for the LAN only, or for this machine only). */
  ok: 0,
  /** Bad command-line arguments. */
  usage: 2,
  /** The config cannot be read or is invalid (file, line and key are named). */
  config: 3,
  /** listen.address is loopback but a public address is configured. */
  loopbackListen: 4,
  /** The public address is private, loopback, CGNAT, documentation or in the LAN. */
  publicAddress: 5,
  /** The public host name does not resolve, or `public_address.url` gives no address. */
  unresolved: 6,
  /** The control port, the FTPS port or the passive range cannot be used. */
  ports: 7,
  /** The status port cannot be bound. */
  statusPort: 8,
  /** Nobody can log in: no users and anonymous off. */
  noLogin: 9,
  /** A home is missing, not a directory, or not readable or writable as its permissions need. */
  home: 10,
  /** The FTPS certificate has expired or does not name the public host. */
  certificate: 11,
  /** proxy: the upstream FTP server is unreachable or refuses sessions. */
  upstream: 12,
  /** port_mapping is on, but no router answered, or it refused every port. */
  portMapping: 13,
} as const;

/** One reason the setup cannot work, with its exit code. */
export interface Problem {
  code: number;
  text: string;
}

/** What the check found: lines to print, warnings, and the problems that make it fail. */
export interface Report {
  out: string[];
  warnings: string[];
  problems: Problem[];
}
