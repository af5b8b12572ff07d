import assert from "node:assert/strict";
import ipaddr from "ipaddr.js";
import {
  activeTarget,
  announceAddress,
  type AnnounceInput,
  type Announcement,
  DEFAULT_LAN_NETWORKS,
  isLanAddress,
  normalizeAddress,
  parseLanNetworks,
} from "../../src/nat/announce.ts";

const LAN = parseLanNetworks(DEFAULT_LAN_NETWORKS);

Deno.test("normalizeAddress unwraps mapped IPv4, canonicalizes IPv6, keeps zones", () => {
  const cases: [string, string][] = [
    ["1.2.3.4", "1.2.3.4"],
    ["::ffff:1.2.3.4", "1.2.3.4"],
    ["::FFFF:192.168.1.5", "192.168.1.5"],
    ["::ffff:c0a8:0105", "192.168.1.5"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["[2001:db8::1]", "2001:db8::1"],
    ["fe80::1%eth0", "fe80::1%eth0"],
    [" 10.0.0.1 ", "10.0.0.1"],
  ];
  for (const [input, want] of cases) {
    assert.equal(normalizeAddress(input), want, input);
  }
});

Deno.test("normalizeAddress rejects non-addresses and ambiguous IPv4 forms", () => {
  for (const bad of ["", "example.com", "1.2.3", "010.0.0.1", "0x7f.0.0.1", "1.2.3.256", "::g"]) {
    assert.throws(() => normalizeAddress(bad), TypeError, bad);
  }
});

Deno.test("normalizeAddress: the dotted-IPv4 shortcut agrees with the full parse", () => {
  // Every octet value in every position, and the edges of the shortcut's pattern.
  const octets = Array.from({ length: 256 }, (_, i) => i);
  const samples: string[] = [];
  for (const o of octets) samples.push(`${o}.0.0.1`, `1.${o}.2.3`, `4.5.${o}.6`, `7.8.9.${o}`);
  samples.push(
    "0.0.0.0",
    "255.255.255.255",
    "256.1.1.1",
    "1.1.1.01",
    "00.1.1.1",
    "1.1.1",
    "1.1.1.1.",
  );
  for (const a of samples) {
    let want: string | Error;
    try {
      want = ipaddr.IPv4.isValidFourPartDecimal(a) && !/(^|\.)0\d/.test(a)
        ? ipaddr.IPv4.parse(a).toString()
        : new TypeError();
    } catch {
      want = new TypeError();
    }
    if (want instanceof Error) assert.throws(() => normalizeAddress(a), TypeError, a);
    else assert.equal(normalizeAddress(a), want, a);
  }
});

Deno.test("parseLanNetworks accepts CIDRs and bare hosts, rejects bad entries clearly", () => {
  const lan = parseLanNetworks(["10.0.0.0/8", "FD00::/8", "203.0.113.9"]);
  assert.deepEqual(lan.networks.map((n) => n.cidr), [
    "10.0.0.0/8",
    "fd00::/8",
    "203.0.113.9/32",
  ]);
  for (const bad of ["10.0.0.0/33", "fd00::/129", "10.0.0.0/x", "nonsense/8", "10.0.0/8", ""]) {
    assert.throws(
      () => parseLanNetworks(["192.168.0.0/16", bad]),
      (err: Error) => err instanceof TypeError && err.message.includes(`"${bad}"`),
      bad,
    );
  }
  assert.equal(DEFAULT_LAN_NETWORKS.length, 8);
  assert.equal(parseLanNetworks([]).networks.length, 0);
});

Deno.test("isLanAddress with the default networks", () => {
  const table: [string, boolean][] = [
    ["10.1.2.3", true],
    ["172.16.0.1", true],
    ["172.31.255.255", true],
    ["172.32.0.1", false],
    ["192.168.1.20", true],
    ["127.0.0.1", true],
    ["169.254.3.4", true],
    ["100.64.0.1", false],
    ["8.8.8.8", false],
    ["203.0.113.7", false],
    ["::ffff:192.168.1.5", true],
    ["::ffff:8.8.8.8", false],
    ["::1", true],
    ["fe80::1", true],
    ["fe80::1%eth0", true],
    ["fd12:3456::1", true],
    ["fc00::1", true],
    ["2001:db8::1", false],
    ["2a00:1450::1", false],
    ["not an address", false],
  ];
  for (const [addr, want] of table) {
    assert.equal(isLanAddress(addr, LAN), want, addr);
  }
});

Deno.test("isLanAddress with a custom list (only 10.0.0.0/8)", () => {
  const lan = parseLanNetworks(["10.0.0.0/8"]);
  assert.equal(isLanAddress("10.9.9.9", lan), true);
  assert.equal(isLanAddress("::ffff:10.9.9.9", lan), true);
  assert.equal(isLanAddress("192.168.1.20", lan), false);
  assert.equal(isLanAddress("127.0.0.1", lan), false);
  assert.equal(isLanAddress("::1", lan), false);
});

Deno.test("announceAddress decision table", () => {
  const only10 = parseLanNetworks(["10.0.0.0/8"]);
  const pub = "203.0.113.7";
  const rows: {
    name: string;
    input: AnnounceInput;
    lan?: typeof LAN;
    address: string | null;
    source: Announcement["source"];
  }[] = [
    {
      name: "LAN client gets the local address",
      input: { client: "192.168.1.20", local: "192.168.1.10", publicAddress: pub },
      address: "192.168.1.10",
      source: "lan",
    },
    {
      name: "loopback client gets the loopback address",
      input: { client: "127.0.0.1", local: "127.0.0.1", publicAddress: pub },
      address: "127.0.0.1",
      source: "lan",
    },
    {
      name: "remote client gets the public address",
      input: { client: "198.51.100.4", local: "192.168.1.10", publicAddress: pub },
      address: pub,
      source: "public",
    },
    {
      name: "mapped LAN client on a dual-stack listener",
      input: {
        client: "::ffff:192.168.1.5",
        local: "::ffff:192.168.1.10",
        publicAddress: pub,
      },
      address: "192.168.1.10",
      source: "lan",
    },
    {
      name: "mapped remote client on a dual-stack listener",
      input: { client: "::ffff:8.8.8.8", local: "::ffff:192.168.1.10", publicAddress: pub },
      address: pub,
      source: "public",
    },
    {
      name: "custom LAN list: 192.168 client is remote",
      input: { client: "192.168.1.20", local: "10.0.0.2", publicAddress: pub },
      lan: only10,
      address: pub,
      source: "public",
    },
    {
      name: "custom LAN list: 10/8 client is local",
      input: { client: "10.7.7.7", local: "10.0.0.2", publicAddress: pub },
      lan: only10,
      address: "10.0.0.2",
      source: "lan",
    },
    {
      name: "public unknown: fall back to the local address",
      input: { client: "198.51.100.4", local: "192.168.1.10", publicAddress: null },
      address: "192.168.1.10",
      source: "fallback-local",
    },
    {
      name: "IPv6 control connection (ULA client): PASV impossible",
      input: { client: "fd00::20", local: "fd00::10", publicAddress: pub },
      address: null,
      source: "ipv6",
    },
    {
      name: "IPv6 control connection (remote client): PASV impossible",
      input: { client: "2001:db8::20", local: "2001:db8::10", publicAddress: pub },
      address: null,
      source: "ipv6",
    },
    {
      name: "IPv6 public address cannot go into a 227",
      input: { client: "198.51.100.4", local: "192.168.1.10", publicAddress: "2001:db8::7" },
      address: null,
      source: "ipv6",
    },
  ];
  for (const row of rows) {
    const got = announceAddress(row.input, row.lan ?? LAN);
    assert.equal(got.address, row.address, row.name);
    assert.equal(got.source, row.source, row.name);
    assert.ok(got.reason.length > 0, row.name);
  }
});

Deno.test("announceAddress reasons name the addresses", () => {
  const lan = announceAddress(
    { client: "192.168.1.20", local: "192.168.1.10", publicAddress: "203.0.113.7" },
    LAN,
  );
  assert.equal(
    lan.reason,
    "client 192.168.1.20 is in the LAN networks: local address 192.168.1.10",
  );
  const pub = announceAddress(
    {
      client: "198.51.100.4",
      local: "192.168.1.10",
      publicAddress: "203.0.113.7",
      publicSource: "myhome.example.net",
    },
    LAN,
  );
  assert.match(pub.reason, /public address 203\.0\.113\.7 \(from myhome\.example\.net\)/);
  const fallback = announceAddress(
    { client: "198.51.100.4", local: "192.168.1.10", publicAddress: null },
    LAN,
  );
  assert.match(fallback.reason, /^public address not resolved yet: telling local address/);
  assert.match(fallback.reason, /192\.168\.1\.10; remote clients will fail until it resolves$/);
  const unconfigured = announceAddress(
    {
      client: "198.51.100.4",
      local: "198.51.100.1",
      publicAddress: null,
      publicConfigured: false,
    },
    LAN,
  );
  assert.equal(unconfigured.source, "fallback-local");
  assert.equal(unconfigured.address, "198.51.100.1");
  assert.match(unconfigured.reason, /no public address configured/);
  const v6 = announceAddress({ client: "::1", local: "::1", publicAddress: null }, LAN);
  assert.match(v6.reason, /PASV needs IPv4; use EPSV/);
});

Deno.test("announceAddress throws on a local address that is not an address", () => {
  assert.throws(
    () => announceAddress({ client: "1.2.3.4", local: "nope", publicAddress: null }, LAN),
    TypeError,
  );
});

Deno.test("activeTarget connects to the peer unless FXP is allowed", () => {
  // A NATed client writes its LAN address; we connect to its router.
  const natted = activeTarget(
    { peer: "198.51.100.4", written: "192.168.0.5" },
    { allowFxp: false },
  );
  assert.equal(natted.address, "198.51.100.4");
  assert.match(natted.reason, /192\.168\.0\.5.*198\.51\.100\.4/);

  // Bounce attempt: a third party's address is ignored.
  const bounce = activeTarget({ peer: "198.51.100.4", written: "10.0.0.1" }, { allowFxp: false });
  assert.equal(bounce.address, "198.51.100.4");

  // Same address, mapped on one side only.
  const same = activeTarget(
    { peer: "::ffff:198.51.100.4", written: "198.51.100.4" },
    { allowFxp: false },
  );
  assert.equal(same.address, "198.51.100.4");
  assert.match(same.reason, /is the control connection's peer/);

  // Garbage in the written address is ignored too.
  const garbage = activeTarget({ peer: "198.51.100.4", written: "1,2,3" }, { allowFxp: false });
  assert.equal(garbage.address, "198.51.100.4");

  // FXP: the written address is used.
  const fxp = activeTarget({ peer: "198.51.100.4", written: "192.0.2.9" }, { allowFxp: true });
  assert.equal(fxp.address, "192.0.2.9");
  assert.match(fxp.reason, /FXP allowed/);
  const fxpMapped = activeTarget(
    { peer: "198.51.100.4", written: "::ffff:192.0.2.9" },
    { allowFxp: true },
  );
  assert.equal(fxpMapped.address, "192.0.2.9");
  assert.throws(
    () => activeTarget({ peer: "198.51.100.4", written: "x" }, { allowFxp: true }),
    TypeError,
  );

  // IPv6 peers (EPRT |2|...|).
  const v6 = activeTarget({ peer: "2001:DB8::4", written: "fd00::5" }, { allowFxp: false });
  assert.equal(v6.address, "2001:db8::4");
});
