/**
 * The configuration schema: the single source of defaults, limits and the
 * wording of "what was expected" in config errors.
 *
 * Every message given here is an "expected ..." phrase; the loader
 * (`load.ts`) adds the file position, the key path and the value it got.
 *
 * Written with `zod/mini`, zod's functional form: a bundle then carries only
 * the parts of zod in use (40 KB rather than 700 KB), which keeps a running
 * server about 7 MiB smaller.
 *
 * @module
 */

import * as z from "zod/mini";
import ipaddr from "ipaddr.js";
import { DEFAULT_LAN_NETWORKS } from "../nat/announce.ts";
import { type DnsServer, parseDnsServer as parseDnsServerOrThrow } from "../nat/public_address.ts";
import { isAddressUrl } from "../nat/http_address.ts";
import { parseRate } from "../ftp/rate.ts";

/** Permissions a user can hold; each FTP command needs at most one of them. */
export const PERMISSIONS = ["read", "write", "delete", "mkdir", "rename"] as const;

/** One permission from {@linkcode PERMISSIONS}. */
export type Permission = typeof PERMISSIONS[number];

/** Log levels accepted in `log.level`; the names are those of LogTape. */
export const LOG_LEVELS = ["debug", "info", "warning", "error"] as const;

/** One level from {@linkcode LOG_LEVELS}. */
export type LogLevel = typeof LOG_LEVELS[number];

export { DEFAULT_LAN_NETWORKS };

/** Longest timeout we accept, so timers never overflow and sessions cannot hang for days. */
const MAX_TIMEOUT_SECONDS = 86_400;

/**
 * True for a plain IPv4 dotted quad or an IPv6 address. Legacy IPv4 forms
 * (`10.1`, `0x0a.0.0.1`) and IPv6 zone ids (`fe80::1%eth0`) are refused: they
 * are ambiguous in a config file and not portable to `Deno.listen`.
 */
export function isIpAddress(text: string): boolean {
  if (text.includes("%")) return false;
  return ipaddr.IPv4.isValidFourPartDecimal(text) || ipaddr.IPv6.isValid(text);
}

/** True for `address/prefix` with an address accepted by {@linkcode isIpAddress}. */
function isCidr(text: string): boolean {
  const slash = text.lastIndexOf("/");
  if (slash < 0) return false;
  if (!isIpAddress(text.slice(0, slash))) return false;
  if (!/^\d{1,3}$/.test(text.slice(slash + 1))) return false;
  try {
    ipaddr.parseCIDR(text);
    return true;
  } catch {
    return false;
  }
}

/** True for a DNS host name (letters, digits, hyphens; at most 253 characters). */
function isHostName(text: string): boolean {
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) =>
    /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label)
  );
}

/**
 * Splits `public_address.dns_server` into the shape `Deno.resolveDns` takes
 * as `nameServer`. Accepts `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]` and
 * `[::1]:5353`; the port defaults to 53. Returns `undefined` when invalid.
 */
export function parseDnsServer(text: string): DnsServer | undefined {
  try {
    return parseDnsServerOrThrow(text);
  } catch {
    return undefined;
  }
}

/** An integer in `[min, max]`, with one message for every way to miss it. */
function intIn(min: number, max: number) {
  const error = `expected an integer from ${min} to ${max}`;
  return z.int({ error }).check(z.minimum(min, { error }), z.maximum(max, { error }));
}

/** An integer of at least `min`. */
function intAtLeast(min: number) {
  const error = `expected an integer of at least ${min}`;
  return z.int({ error }).check(z.minimum(min, { error }));
}

/** A number of seconds above zero, capped so timers cannot overflow. */
function timeoutSeconds() {
  const error = `expected a number of seconds above 0 and at most ${MAX_TIMEOUT_SECONDS}`;
  return z.number({ error }).check(z.gt(0, { error }), z.maximum(MAX_TIMEOUT_SECONDS, { error }));
}

/** An IP address literal. */
function ipAddress() {
  const error = "expected an IP address such as 192.168.1.10 or ::1";
  return z.string({ error }).check(z.refine(isIpAddress, { error }));
}

/** A file system path; relative ones are resolved by the loader. */
function pathString(what: string) {
  const error = `expected ${what}`;
  return z.string({ error }).check(z.minLength(1, { error }));
}

/** A rate in bytes per second: a number, or one with a K, M or G suffix (see `parseRate`). */
function rate() {
  const error = "expected a rate in bytes per second, at least 1000, such as 1000, 512K or 10M " +
    "(K, M, G: powers of 1000; Ki, Mi, Gi: of 1024; 0: no limit)";
  const valid = (value: number | string) => {
    const bytes = parseRate(value);
    return bytes === 0 || (bytes !== undefined && bytes >= 1000);
  };
  return z.pipe(
    z.union([z.number(), z.string()], { error }).check(z.refine(valid, { error })),
    z.transform((value) => parseRate(value) ?? 0),
  );
}

/** A list of permissions. */
function permissionList() {
  return z._default(z.array(z.enum(PERMISSIONS)), ["read"]);
}

const PASSWORD_HASH = /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/_-]+={0,2}\$[A-Za-z0-9+/_-]+={0,2}$/;

const listenSchema = z.strictObject({
  address: z._default(ipAddress(), "127.0.0.1"),
  port: z._default(intIn(1, 65535), 2121),
});

const bannerSchema = z.string().check(
  z.maxLength(200, { error: "expected a single line of at most 200 characters" }),
  z.refine((text) => !/[\r\n]/.test(text), {
    error: "expected a single line of at most 200 characters",
  }),
);

const passiveSchema = z.strictObject({
  min_port: z._default(intIn(1024, 65535), 50000),
  max_port: z._default(intIn(1024, 65535), 50100),
}).check(z.refine((passive) => passive.min_port <= passive.max_port, {
  error: (issue) => {
    const passive = issue.input as { min_port: number; max_port: number };
    return `expected min_port (${passive.min_port}) not above max_port (${passive.max_port})`;
  },
}));

const publicAddressSchema = z.strictObject({
  host: z.optional(
    z.string().check(
      z.refine(isHostName, { error: "expected a DNS host name such as myhome.example.net" }),
      z.refine((host) => !isIpAddress(host), {
        error: "expected a host name; put an IP address in public_address.address instead",
      }),
    ),
  ),
  address: z.optional(ipAddress()),
  // router: the WAN address the router reports over port_mapping; http: the
  // address a web service at `url` answers with. Both refreshed like DNS.
  from: z.optional(z.enum(["router", "http"], { error: "expected router or http" })),
  url: z.optional(
    z.string().check(z.refine(isAddressUrl, {
      error: "expected an http:// or https:// URL (without user:password@) that answers with " +
        "the public IP address, such as https://ip.example.net/",
    })),
  ),
  dns_server: z.optional(
    z.string().check(z.refine((text) => parseDnsServer(text) !== undefined, {
      error: "expected a DNS server as 1.2.3.4, 1.2.3.4:5353 or [::1]:5353",
    })),
  ),
  refresh_seconds: z._default(
    z.number({ error: "expected a number of seconds from 5 to 86400" }).check(
      z.minimum(5, { error: "expected a number of seconds from 5 to 86400" }),
      z.maximum(86400, { error: "expected a number of seconds from 5 to 86400" }),
    ),
    60,
  ),
  ipv6: z._default(z.boolean(), false),
}).check(
  z.refine((pa) => [pa.host, pa.address, pa.from].filter((v) => v !== undefined).length === 1, {
    error: (issue) => {
      const pa = issue.input as { host?: string; address?: string; from?: string };
      const given = [pa.host, pa.address, pa.from].filter((v) => v !== undefined).length;
      return "expected exactly one of host (a DNS name), address (an IP address) or " +
        `from (router or http); got ${given === 0 ? "neither" : "more than one"}`;
    },
  }),
  z.superRefine((pa, ctx) => {
    if (pa.from === "http" && pa.url === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["from"],
        message: "expected public_address.url with from: http (the http:// or https:// URL " +
          "that answers with the public IP address)",
      });
    } else if (pa.from !== "http" && pa.url !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["url"],
        message: "expected url only with from: http (it is where from: http fetches the " +
          "public address)",
      });
    }
  }),
  z.superRefine((pa, ctx) => {
    if (typeof pa.address !== "string" || pa.address.includes(":") === pa.ipv6) return;
    ctx.addIssue({
      code: "custom",
      path: ["address"],
      message: pa.ipv6
        ? "expected an IPv6 address, as ipv6 is true"
        : "expected an IPv4 address (for an IPv6 one, set public_address.ipv6: true)",
    });
  }),
);

/** A password hash from `pitifulnat hash-password` (never a clear-text password). */
function passwordHash() {
  return z.string().check(z.superRefine((password, ctx) => {
    if (!password.startsWith("scrypt$")) {
      ctx.addIssue({
        code: "custom",
        message:
          "expected a password hash from `pitifulnat hash-password`, not a clear-text password",
      });
    } else if (!PASSWORD_HASH.test(password)) {
      ctx.addIssue({
        code: "custom",
        message:
          "expected a password hash of the form scrypt$N$r$p$salt$hash from `pitifulnat hash-password`",
      });
    }
  }));
}

const userSchema = z.strictObject({
  name: z.string().check(
    z.minLength(1, { error: "expected a non-empty user name" }),
    z.refine((name) => !/[\s:\p{Cc}]/u.test(name), {
      error: "expected a user name without spaces, colons or control characters",
    }),
  ),
  password: passwordHash(),
  home: pathString("a home directory path"),
  permissions: permissionList(),
  max_download_rate: z.optional(rate()),
  max_upload_rate: z.optional(rate()),
  max_sessions: z.optional(intAtLeast(1)),
});

const usersSchema = z._default(
  z.array(userSchema).check(z.superRefine((users, ctx) => {
    // Runs even when some user is invalid (see `when`) so that every problem
    // is reported at once; hence the shape checks here.
    const seen = new Map<string, number>();
    users.forEach((user, index) => {
      const name: unknown = (user as { name?: unknown } | null)?.name;
      if (typeof name !== "string") return;
      const first = seen.get(name);
      if (first === undefined) {
        seen.set(name, index);
      } else {
        ctx.addIssue({
          code: "custom",
          path: [index, "name"],
          message: `expected a unique user name (users[${first}] has the same)`,
        });
      }
    });
  }, { when: (payload) => Array.isArray(payload.value) })),
  [],
);

const anonymousSchema = z.strictObject({
  enabled: z._default(z.boolean(), false),
  home: z.optional(pathString("a home directory path")),
  permissions: permissionList(),
  max_download_rate: z.optional(rate()),
  max_upload_rate: z.optional(rate()),
  max_sessions: z.optional(intAtLeast(1)),
}).check(z.superRefine((anonymous, ctx) => {
  if (anonymous.enabled && anonymous.home === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["home"],
      message: "expected a home directory path when anonymous.enabled is true",
    });
  }
}));

const limitsSchema = z.strictObject({
  max_sessions: z._default(intAtLeast(1), 200),
  max_sessions_per_address: z._default(intAtLeast(1), 20),
  idle_timeout_seconds: z._default(timeoutSeconds(), 300),
  login_timeout_seconds: z._default(timeoutSeconds(), 60),
  data_timeout_seconds: z._default(timeoutSeconds(), 60),
  max_line_length: z._default(intIn(512, 65536), 4096),
  max_login_failures: z._default(intAtLeast(1), 3),
  login_failure_delay_ms: z._default(intIn(0, 10000), 1000),
  shutdown_grace_seconds: z._default(intIn(0, 3600), 10),
  max_login_failures_per_address: z._default(intAtLeast(1), 10),
  login_failure_window_seconds: z._default(timeoutSeconds(), 300),
  ban_seconds: z._default(timeoutSeconds(), 600),
  max_download_rate: z.optional(rate()),
  max_upload_rate: z.optional(rate()),
});

const logSchema = z.strictObject({
  level: z._default(z.enum(LOG_LEVELS), "info"),
  file: z.optional(pathString("a log file path")),
  // Rotation of log.file: rotate at max_bytes, keep file.1 ... file.<keep>.
  max_bytes: z._default(intAtLeast(4096), 10 * 1024 * 1024),
  keep: z._default(intIn(0, 100), 5),
});

/** Whether an address accepts only this machine's own connections. */
function isLoopback(address: string): boolean {
  return address === "::1" || address.startsWith("127.");
}

/**
 * The status page and endpoints: loopback only unless `users` are given,
 * who then log in with HTTP Basic from anywhere else.
 */
const statusSchema = z.strictObject({
  address: z._default(ipAddress(), "127.0.0.1"),
  port: z.optional(intIn(1, 65535)),
  users: z.optional(z.array(z.strictObject({
    name: z.string().check(
      z.refine((name) => /^[^\s:\p{Cc}]+$/u.test(name), {
        error: "expected a user name without spaces, colons or control characters",
      }),
    ),
    password: passwordHash(),
  }))),
}).check(z.superRefine((status, ctx) => {
  if (typeof status.address !== "string" || isLoopback(status.address)) return;
  if (Array.isArray(status.users) && status.users.length > 0) return;
  ctx.addIssue({
    code: "custom",
    path: ["address"],
    message: "expected status.users (a name and a password hash) when the status page is " +
      "open beyond loopback: it shows who is connected and from where",
  });
}));

/**
 * FTPS (explicit AUTH TLS, and implicit on its own port). The files are
 * read and checked when the config is loaded (loadConfig), not here.
 */
const tlsSchema = z.strictObject({
  certificate: z.string({ error: "expected the path of a PEM certificate (a chain is allowed)" }),
  key: z.string({ error: "expected the path of a PEM private key" }),
  required: z._default(
    z.enum(["always", "remote", "never"], { error: "expected always, remote or never" }),
    "remote",
  ),
  implicit_port: z.optional(intIn(1, 65535)),
});

/**
 * `pitifulnat proxy`: the existing FTP server to stand in front of. Absent
 * unless the proxy is used; `serve` ignores it.
 */
/**
 * Port mapping on the home router (UPnP-IGD, NAT-PMP or PCP): the control
 * port, the implicit FTPS port and the passive range, asked for with the
 * external port equal to the internal one. Off unless `protocol` says.
 */
const portMappingSchema = z.strictObject({
  protocol: z._default(
    z.enum(["off", "auto", "natpmp", "upnp", "pcp"], {
      error: "expected off, auto, natpmp, upnp or pcp",
    }),
    "off",
  ),
  // Default: the default route's gateway (NAT-PMP, PCP), found by SSDP (UPnP).
  gateway: z.optional(ipAddress()),
  // Default: this machine's address on the gateway's network.
  internal_address: z.optional(ipAddress()),
  lease_seconds: z._default(intIn(10, 86400), 3600),
  max_mappings: z._default(intIn(1, 1000), 100),
  // An IGD's description URL, instead of SSDP discovery (UPnP).
  upnp_location: z.optional(
    z.string().check(z.refine((u) => /^https?:\/\//.test(u), {
      error: "expected an http:// URL of the router's UPnP description",
    })),
  ),
});

const proxySchema = z.strictObject({
  upstream: z.strictObject({
    host: z.string({ error: "expected a host name or IP address such as 127.0.0.1" }).check(
      z.refine((host) => isIpAddress(host) || isHostName(host), {
        error: "expected a host name or IP address such as 127.0.0.1",
      }),
    ),
    port: z._default(intIn(1, 65535), 21),
  }),
  connect_timeout_seconds: z._default(timeoutSeconds(), 10),
});

/**
 * The whole configuration. `configSchema.parse({})` gives a complete config
 * with every default; unknown keys are errors at every level.
 */
export const configSchema = z.strictObject({
  listen: z.prefault(listenSchema, {}),
  banner: z._default(bannerSchema, "pitifulnat FTP server ready"),
  passive: z.prefault(passiveSchema, {}),
  public_address: z.optional(publicAddressSchema),
  lan_networks: z._default(
    z.array(
      z.string().check(z.refine(isCidr, {
        error: "expected a network in CIDR notation such as 192.168.0.0/16 or fd00::/8",
      })),
    ),
    [...DEFAULT_LAN_NETWORKS],
  ),
  allow_fxp: z._default(z.boolean(), false),
  // STOR into a hidden temporary file, renamed over the target when complete.
  atomic_uploads: z._default(z.boolean(), false),
  users: usersSchema,
  anonymous: z.prefault(anonymousSchema, {}),
  limits: z.prefault(limitsSchema, {}),
  log: z.prefault(logSchema, {}),
  status: z.prefault(statusSchema, {}),
  tls: z.optional(tlsSchema),
  proxy: z.optional(proxySchema),
  port_mapping: z.optional(portMappingSchema),
}).check(z.superRefine((config, ctx) => {
  if (config.public_address?.from !== "router") return;
  if ((config.port_mapping?.protocol ?? "off") !== "off") return;
  ctx.addIssue({
    code: "custom",
    path: ["public_address", "from"],
    message: "expected port_mapping.protocol (auto, natpmp, upnp or pcp) to be set: the " +
      "router is asked for its WAN address over it",
  });
}));

/** A validated configuration with all defaults applied. */
export type Config = z.infer<typeof configSchema>;

/** The configuration as written in YAML, before defaults. */
export type ConfigInput = z.input<typeof configSchema>;

/** One entry of `users`. */
export type UserConfig = Config["users"][number];
