import assert from "node:assert/strict";
import { ConfigError, loadConfig, parseConfig } from "../../src/config/load.ts";
import { configSchema, DEFAULT_LAN_NETWORKS, parseDnsServer } from "../../src/config/schema.ts";
import * as z from "zod/mini";

const HASH = "scrypt$16384$8$1$bPP5DJKF24MKB4GzmP0SoA$NDzATpW33mJYCz4W0mB9VlRMFXbH53PPu+Y/bDgFJNc";

/** The problems `parseConfig` reports for `lines`, joined as a file. */
function problemsOf(lines: string[]): string[] {
  try {
    parseConfig(lines.join("\n") + "\n", { file: "config.yaml", baseDir: "/etc/pitifulnat" });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    assert.equal(error.message, error.problems.join("\n"));
    return error.problems;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("empty text gives every default", () => {
  const expected = {
    listen: { address: "127.0.0.1", port: 2121 },
    banner: "pitifulnat FTP server ready",
    passive: { min_port: 50000, max_port: 50100 },
    lan_networks: [...DEFAULT_LAN_NETWORKS],
    allow_fxp: false,
    atomic_uploads: false,
    users: [],
    anonymous: { enabled: false, permissions: ["read"] },
    limits: {
      max_sessions: 200,
      max_sessions_per_address: 20,
      idle_timeout_seconds: 300,
      login_timeout_seconds: 60,
      data_timeout_seconds: 60,
      max_line_length: 4096,
      max_login_failures: 3,
      login_failure_delay_ms: 1000,
      shutdown_grace_seconds: 10,
      max_login_failures_per_address: 10,
      login_failure_window_seconds: 300,
      ban_seconds: 600,
    },
    log: { level: "info", max_bytes: 10485760, keep: 5 },
    status: { address: "127.0.0.1" },
  };
  assert.deepEqual(parseConfig("", { file: "c.yaml" }), expected);
  assert.deepEqual(parseConfig("# only a comment\n", { file: "c.yaml" }), expected);
  assert.deepEqual(configSchema.parse({}), expected);
});

Deno.test("a key with an empty value means its default", () => {
  const config = parseConfig("anonymous:\n  # enabled: true\nlisten:\n  port:\n", {
    file: "c.yaml",
  });
  assert.deepEqual(config.anonymous, { enabled: false, permissions: ["read"] });
  assert.equal(config.listen.port, 2121);
});

Deno.test("config.example.yaml parses without errors", async () => {
  const url = new URL("../../config.example.yaml", import.meta.url);
  const config = parseConfig(await Deno.readTextFile(url), {
    file: "config.example.yaml",
    baseDir: "/srv/pitifulnat",
  });
  assert.equal(config.users[0].name, "alice");
  assert.ok(config.users[0].password.startsWith("scrypt$"));
  assert.equal(config.users[0].home, "/srv/pitifulnat/ftp/alice");
  assert.equal(config.public_address?.host, "myhome.example.net");
});

Deno.test("config.example.yaml documents every key of the schema", async () => {
  const text = await Deno.readTextFile(new URL("../../config.example.yaml", import.meta.url));
  const missing = schemaKeys(configSchema).filter((key) =>
    !new RegExp(`^\\s*(#\\s*)?(- )?${key}:`, "m").test(text)
  );
  assert.deepEqual(missing, []);
  assert.ok(schemaKeys(configSchema).length > 40, "the schema's keys are found");
});

/** Every key name anywhere in the schema. */
function schemaKeys(schema: z.core.$ZodType): string[] {
  let inner = schema;
  while (
    inner instanceof z.ZodMiniDefault || inner instanceof z.ZodMiniPrefault ||
    inner instanceof z.ZodMiniOptional
  ) {
    inner = inner._zod.def.innerType;
  }
  if (inner instanceof z.ZodMiniArray) return schemaKeys(inner._zod.def.element);
  if (!(inner instanceof z.ZodMiniObject)) return [];
  return Object.entries(inner.shape as Record<string, z.core.$ZodType>)
    .flatMap(([key, value]) => [key, ...schemaKeys(value)]);
}

Deno.test("bad type names position, path, expectation and value", () => {
  assert.deepEqual(
    problemsOf([
      "listen:",
      "  port: abc",
      "allow_fxp: yes",
      "users: {}",
    ]),
    [
      'config.yaml:2:9: listen.port: expected an integer from 1 to 65535; got "abc"',
      'config.yaml:3:12: allow_fxp: expected true or false; got "yes"',
      "config.yaml:4:8: users: expected a list; got a mapping",
    ],
  );
});

Deno.test("out-of-range numbers say the range", () => {
  assert.deepEqual(
    problemsOf([
      "limits:",
      "  max_line_length: 100",
      "  idle_timeout_seconds: 0",
      "status:",
      "  port: 99999",
    ]),
    [
      "config.yaml:2:20: limits.max_line_length: expected an integer from 512 to 65536; got 100",
      "config.yaml:3:25: limits.idle_timeout_seconds: " +
      "expected a number of seconds above 0 and at most 86400; got 0",
      "config.yaml:5:9: status.port: expected an integer from 1 to 65535; got 99999",
    ],
  );
});

Deno.test("bad enum value lists the choices", () => {
  assert.deepEqual(
    problemsOf([
      "log:",
      "  level: verbose",
      "users:",
      "  - name: alice",
      `    password: ${HASH}`,
      "    home: /srv/alice",
      "    permissions:",
      "      - read",
      "      - wirte",
    ]),
    [
      'config.yaml:2:10: log.level: expected one of debug, info, warning, error; got "verbose"',
      "config.yaml:9:9: users[0].permissions[1]: " +
      'expected one of read, write, delete, mkdir, rename; got "wirte"',
    ],
  );
});

Deno.test("unknown keys point at the key and suggest a near one", () => {
  assert.deepEqual(
    problemsOf([
      "listen:",
      "  address: 0.0.0.0",
      "  prot: 21",
      "pasive:",
      "  min_port: 50000",
      "frobnicate: true",
    ]),
    [
      'config.yaml:3:3: listen.prot: unknown key (did you mean "port"?)',
      'config.yaml:4:1: pasive: unknown key (did you mean "passive"?)',
      "config.yaml:6:1: frobnicate: unknown key (known keys: listen, banner, passive, " +
      "public_address, lan_networks, allow_fxp, atomic_uploads, users, anonymous, limits, log, " +
      "status, tls, proxy, port_mapping)",
    ],
  );
});

Deno.test("YAML syntax errors give file, line and column", () => {
  assert.deepEqual(problemsOf(["lan_networks: [10.0.0.0/8", "allow_fxp: true"]), [
    "config.yaml:2:1: YAML syntax: a [ list is not closed with ] on the same line",
  ]);
  assert.deepEqual(problemsOf(["banner: a", "banner: b"]), [
    "config.yaml:2:1: YAML syntax: a key appears twice in one section",
  ]);
  // One plain message, not the library's follow-on errors.
  assert.deepEqual(problemsOf(["listen:", "\taddress: 1.2.3.4", "\tport: 21"]), [
    "config.yaml:2:1: YAML syntax: indent with spaces, not tabs",
  ]);
  assert.deepEqual(problemsOf(["listen:", '  address: "127.0.0.1', "  port: 21"]), [
    "config.yaml:4:1: YAML syntax: a quoted value is not closed (a missing quote)",
  ]);
});

Deno.test("public_address needs exactly one of host and address", () => {
  assert.deepEqual(problemsOf(["allow_fxp: false", "public_address:", "  ipv6: true"]), [
    "config.yaml:3:3: public_address: " +
    "expected exactly one of host (a DNS name), address (an IP address) or from (router or http); " +
    "got neither",
  ]);
  assert.deepEqual(
    problemsOf(["public_address:", "  host: myhome.example.net", "  address: 203.0.113.7"]),
    [
      "config.yaml:2:3: public_address: " +
      "expected exactly one of host (a DNS name), address (an IP address) or from (router or http); " +
      "got more than one",
    ],
  );
});

Deno.test("public_address validates host, address and dns_server", () => {
  assert.deepEqual(
    problemsOf([
      "public_address:",
      "  host: 203.0.113.7",
      "  dns_server: 1.1.1.1:99999",
    ]),
    [
      "config.yaml:2:9: public_address.host: " +
      'expected a host name; put an IP address in public_address.address instead; got "203.0.113.7"',
      "config.yaml:3:15: public_address.dns_server: " +
      'expected a DNS server as 1.2.3.4, 1.2.3.4:5353 or [::1]:5353; got "1.1.1.1:99999"',
    ],
  );
  const config = parseConfig(
    "public_address:\n  address: 203.0.113.7\n  dns_server: '[::1]:5353'\n",
    {
      file: "c.yaml",
    },
  );
  assert.deepEqual(config.public_address, {
    address: "203.0.113.7",
    dns_server: "[::1]:5353",
    refresh_seconds: 60,
    ipv6: false,
  });
});

Deno.test("parseDnsServer splits address and port", () => {
  assert.deepEqual(parseDnsServer("1.2.3.4"), { ipAddr: "1.2.3.4", port: 53 });
  assert.deepEqual(parseDnsServer("1.2.3.4:5353"), { ipAddr: "1.2.3.4", port: 5353 });
  assert.deepEqual(parseDnsServer("[::1]:5353"), { ipAddr: "::1", port: 5353 });
  assert.deepEqual(parseDnsServer("::1"), { ipAddr: "::1", port: 53 });
  assert.equal(parseDnsServer("dns.example"), undefined);
  assert.equal(parseDnsServer("1.2.3.4:0"), undefined);
  assert.equal(parseDnsServer("10.1"), undefined);
});

Deno.test("a clear-text password is refused and never echoed", () => {
  const problems = problemsOf([
    "users:",
    "  - name: alice",
    "    password: hunter2",
    "    home: /srv/alice",
    "  - name: bob",
    "    password: scrypt$not-a-hash",
    "    home: /srv/bob",
  ]);
  assert.deepEqual(problems, [
    "config.yaml:3:15: users[0].password: " +
    "expected a password hash from `pitifulnat hash-password`, not a clear-text password",
    "config.yaml:6:15: users[1].password: " +
    "expected a password hash of the form scrypt$N$r$p$salt$hash from `pitifulnat hash-password`",
  ]);
  assert.ok(!problems.join("\n").includes("hunter2"));
});

Deno.test("duplicate user names point at the second one", () => {
  assert.deepEqual(
    problemsOf([
      "users:",
      "  - name: alice",
      `    password: ${HASH}`,
      "    home: /srv/alice",
      "  - name: alice",
      `    password: ${HASH}`,
      "    home: /srv/alice2",
    ]),
    [
      "config.yaml:5:11: users[1].name: " +
      'expected a unique user name (users[0] has the same); got "alice"',
    ],
  );
});

Deno.test("missing required keys point at the parent mapping", () => {
  assert.deepEqual(
    problemsOf([
      "users:",
      "  - name: alice",
      "    permissions: [read]",
      "anonymous:",
      "  enabled: true",
    ]),
    [
      "config.yaml:2:5: users[0].password: missing required key; expected a string",
      "config.yaml:2:5: users[0].home: missing required key; expected a home directory path",
      "config.yaml:5:3: anonymous.home: " +
      "missing required key; expected a home directory path when anonymous.enabled is true",
    ],
  );
});

Deno.test("bad CIDRs are named", () => {
  assert.deepEqual(
    problemsOf([
      "lan_networks:",
      "  - 192.168.0.0/16",
      "  - 10.0.0.0/33",
      "  - 10/8",
    ]),
    [
      "config.yaml:3:5: lan_networks[1]: " +
      'expected a network in CIDR notation such as 192.168.0.0/16 or fd00::/8; got "10.0.0.0/33"',
      "config.yaml:4:5: lan_networks[2]: " +
      'expected a network in CIDR notation such as 192.168.0.0/16 or fd00::/8; got "10/8"',
    ],
  );
});

Deno.test("min_port above max_port is refused", () => {
  assert.deepEqual(problemsOf(["passive:", "  min_port: 60000", "  max_port: 50000"]), [
    "config.yaml:2:3: passive: expected min_port (60000) not above max_port (50000)",
  ]);
  // The default max_port takes part too.
  assert.deepEqual(problemsOf(["passive:", "  min_port: 60000"]), [
    "config.yaml:2:3: passive: expected min_port (60000) not above max_port (50100)",
  ]);
});

Deno.test("banner must be one short line", () => {
  assert.deepEqual(problemsOf(['banner: "hi\\r\\nthere"']), [
    'config.yaml:1:9: banner: expected a single line of at most 200 characters; got "hi\\r\\nthere"',
  ]);
});

Deno.test("every problem is reported: unknown keys first, then in file order", () => {
  const problems = problemsOf([
    "log:",
    "  level: loud",
    "listen:",
    "  port: 0",
    "  adress: 0.0.0.0",
  ]);
  assert.deepEqual(problems.map((p) => p.split(": ")[0]), [
    "config.yaml:5:3",
    "config.yaml:2:10",
    "config.yaml:4:9",
  ]);
});

Deno.test("a misspelt key is the one problem, not the checks its default fails", () => {
  // min_port defaults to 50000 when min_prot is misspelt: no "not above max_port".
  assert.deepEqual(problemsOf(["passive:", "  min_prot: 41000", "  max_port: 41050"]), [
    'config.yaml:2:3: passive.min_prot: unknown key (did you mean "min_port"?)',
  ]);
});

Deno.test("an IPv6 public address needs ipv6: true (and the reverse)", () => {
  assert.deepEqual(problemsOf(["public_address: { address: 2001:db8::5 }"]), [
    "config.yaml:1:28: public_address.address: expected an IPv4 address (for an IPv6 one, " +
    'set public_address.ipv6: true); got "2001:db8::5"',
  ]);
  assert.deepEqual(problemsOf(["public_address: { address: 203.0.113.5, ipv6: true }"]), [
    "config.yaml:1:28: public_address.address: expected an IPv6 address, as ipv6 is true; " +
    'got "203.0.113.5"',
  ]);
});

Deno.test("the top level must be a mapping", () => {
  assert.deepEqual(problemsOf(["- a", "- b"]), [
    "config.yaml:1:1: expected a mapping; got a list",
  ]);
});

Deno.test("relative home and log paths resolve against baseDir", () => {
  const config = parseConfig(
    [
      "users:",
      "  - name: alice",
      `    password: ${HASH}`,
      "    home: ftp/alice",
      "  - name: bob",
      `    password: ${HASH}`,
      "    home: /srv/bob",
      "anonymous:",
      "  enabled: true",
      "  home: ../public",
      "log:",
      "  file: logs/pitifulnat.log",
    ].join("\n"),
    { file: "config.yaml", baseDir: "/etc/pitifulnat" },
  );
  assert.equal(config.users[0].home, "/etc/pitifulnat/ftp/alice");
  assert.equal(config.users[1].home, "/srv/bob");
  assert.equal(config.anonymous.home, "/etc/public");
  assert.equal(config.log.file, "/etc/pitifulnat/logs/pitifulnat.log");
});

Deno.test("loadConfig reads the file and resolves paths next to it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/config.yaml`;
    await Deno.writeTextFile(file, "anonymous:\n  enabled: true\n  home: pub\n");
    const config = await loadConfig(file);
    assert.equal(config.anonymous.home, `${dir}/pub`);

    await Deno.writeTextFile(file, "listen:\n  port: x\n");
    await assert.rejects(loadConfig(file), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, [
        `${file}:2:9: listen.port: expected an integer from 1 to 65535; got "x"`,
      ]);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig names a missing file", async () => {
  const file = "/nonexistent/pitifulnat/config.yaml";
  await assert.rejects(loadConfig(file), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.deepEqual(error.problems, [`${file}: cannot read config file: no such file`]);
    return true;
  });
});

Deno.test("public_address.from: router needs port_mapping", () => {
  assert.deepEqual(problemsOf(["public_address: { from: router }"]), [
    "config.yaml:1:25: public_address.from: expected port_mapping.protocol (auto, natpmp, upnp " +
    'or pcp) to be set: the router is asked for its WAN address over it; got "router"',
  ]);
  const ok = parseConfig("public_address: { from: router }\nport_mapping: { protocol: natpmp }\n", {
    file: "config.yaml",
  });
  assert.equal(ok.public_address?.from, "router");
});

Deno.test("public_address.from: http needs url, and url needs from: http", () => {
  const config = parseConfig(
    'public_address: { from: http, url: "https://ip.example.net/", refresh_seconds: 30 }\n',
    { file: "config.yaml" },
  );
  assert.deepEqual(config.public_address, {
    from: "http",
    url: "https://ip.example.net/",
    refresh_seconds: 30,
    ipv6: false,
  });
  // Never on by default: no public_address, no source.
  assert.equal(parseConfig("", { file: "config.yaml" }).public_address, undefined);
  assert.equal(
    parseConfig('public_address: { from: http, url: "http://198.51.100.1:8080/" }\n', {
      file: "config.yaml",
    }).public_address?.refresh_seconds,
    60,
  );
  assert.deepEqual(problemsOf(["public_address: { from: http }"]), [
    "config.yaml:1:25: public_address.from: expected public_address.url with from: http (the " +
    'http:// or https:// URL that answers with the public IP address); got "http"',
  ]);
  assert.deepEqual(
    problemsOf(["public_address:", "  host: myhome.example.net", "  url: https://ip.example.net/"]),
    [
      "config.yaml:3:8: public_address.url: expected url only with from: http (it is where " +
      'from: http fetches the public address); got "https://ip.example.net/"',
    ],
  );
  const badUrl = "expected an http:// or https:// URL (without user:password@) that answers " +
    "with the public IP address, such as https://ip.example.net/";
  for (const url of ["ftp://ip.example.net/", "ip.example.net", "https://me:pw@ip.example.net/"]) {
    assert.deepEqual(problemsOf(["public_address:", "  from: http", `  url: "${url}"`]), [
      `config.yaml:3:8: public_address.url: ${badUrl}; got "${url}"`,
    ], url);
  }
  assert.deepEqual(problemsOf(["public_address: { from: web }"]), [
    'config.yaml:1:25: public_address.from: expected router or http; got "web"',
  ]);
  assert.deepEqual(
    problemsOf([
      "public_address:",
      "  address: 203.0.113.7",
      "  from: http",
      "  url: https://ip.example.net/",
    ]),
    [
      "config.yaml:2:3: public_address: expected exactly one of host (a DNS name), address " +
      "(an IP address) or from (router or http); got more than one",
    ],
  );
  assert.deepEqual(problemsOf(["public_address: { from: http, url: 7 }"]), [
    "config.yaml:1:36: public_address.url: expected a string; got 7",
  ]);
});
