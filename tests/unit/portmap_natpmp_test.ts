/**
 * NAT-PMP (RFC 6886): the wire format, and the port mapper against a tiny
 * fake gateway on loopback UDP that answers as the RFC says (and can be
 * told to refuse, stay silent, give other external ports, or "reboot").
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import type { Clock } from "../../src/nat/public_address.ts";
import {
  decodeExternalAddressReply,
  decodeMapReply,
  encodeExternalAddressRequest,
  encodeMapRequest,
  epochWentBack,
} from "../../src/nat/portmap/natpmp_wire.ts";
import {
  defaultGateway,
  describeReport,
  localAddressToward,
  NatPmpClient,
  NoReplyError,
  PortMapper,
  type PortMapperOptions,
  portsToMap,
} from "../../src/nat/portmap/mod.ts";
import { recordText as text, withLog } from "../helpers/log.ts";

/** A NAT-PMP gateway on 127.0.0.1: keeps a mapping table and answers requests. */
class FakeGateway {
  readonly sock = dgram.createSocket("udp4");
  /** The epoch is `now - bootAt` seconds (set `bootAt` later to simulate a reboot). */
  bootAt = Date.now() / 1000 - 1000;
  external = "203.0.113.7";
  /** Mappings by internal port: external port and lifetime. */
  readonly table = new Map<number, { external: number; lifetime: number }>();
  /** Every request received, decoded roughly: [opcode, internal, external, lifetime]. */
  readonly requests: number[][] = [];
  /** When set, mapping requests get this result code. */
  refuse = 0;
  /** Ports answered with external port + 1 (as if taken). */
  readonly taken = new Set<number>();
  /** Answer nothing at all. */
  silent = false;
  /** The largest lifetime granted. */
  maxLifetime = 7200;

  /** Binds to a free loopback port. */
  async listen(): Promise<number> {
    this.sock.on("message", (msg, rinfo) => this.#answer(new Uint8Array(msg), rinfo));
    await new Promise<void>((resolve) => this.sock.bind(0, "127.0.0.1", resolve));
    return this.sock.address().port;
  }

  /** The epoch field now. */
  epoch(): number {
    return Math.floor(Date.now() / 1000 - this.bootAt);
  }

  /** Forgets every mapping and restarts the epoch at 0. */
  reboot(): void {
    this.table.clear();
    this.bootAt = Date.now() / 1000;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.sock.close(() => resolve()));
  }

  #answer(req: Uint8Array, to: dgram.RemoteInfo): void {
    if (this.silent) return;
    const v = new DataView(req.buffer, req.byteOffset, req.byteLength);
    const op = req[1];
    if (op === 0) {
      this.requests.push([0]);
      const out = new Uint8Array(12);
      const o = new DataView(out.buffer);
      out[1] = 128;
      o.setUint32(4, this.epoch());
      out.set(this.external.split(".").map(Number), 8);
      this.sock.send(out, to.port, to.address);
      return;
    }
    const internal = v.getUint16(4);
    const asked = v.getUint16(6);
    const lifetime = v.getUint32(8);
    this.requests.push([op, internal, asked, lifetime]);
    const out = new Uint8Array(16);
    const o = new DataView(out.buffer);
    out[1] = 128 + op;
    o.setUint32(4, this.epoch());
    o.setUint16(8, internal);
    if (this.refuse) {
      o.setUint16(2, this.refuse);
    } else if (lifetime === 0) {
      this.table.delete(internal);
    } else {
      const external = this.table.get(internal)?.external ??
        (this.taken.has(asked) ? asked + 1 : asked);
      const granted = Math.min(lifetime, this.maxLifetime);
      this.table.set(internal, { external, lifetime: granted });
      o.setUint16(10, external);
      o.setUint32(12, granted);
    }
    this.sock.send(out, to.port, to.address);
  }
}

/** Manual timers over real time: the test fires the pending renewal when it wants. */
class ManualTimers implements Clock {
  #next = 1;
  readonly timers = new Map<number, { ms: number; fn: () => void }>();
  now(): number {
    return Date.now();
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.#next++;
    this.timers.set(id, { ms, fn });
    return id;
  }
  clearTimeout(id: number): void {
    this.timers.delete(id);
  }
  /** The delays of the pending timers. */
  delays(): number[] {
    return [...this.timers.values()].map((t) => t.ms);
  }
  /** Fires every pending timer. */
  fire(): void {
    const due = [...this.timers.values()];
    this.timers.clear();
    for (const t of due) t.fn();
  }
}

/** A gateway, a mapper talking to it, and cleanup. */
async function withMapper(
  options: Partial<PortMapperOptions>,
  fn: (gw: FakeGateway, mapper: PortMapper, timers: ManualTimers) => Promise<void>,
  setup: (gw: FakeGateway) => void = () => {},
): Promise<void> {
  const gw = new FakeGateway();
  setup(gw);
  const port = await gw.listen();
  const timers = new ManualTimers();
  const mapper = new PortMapper({
    protocol: "natpmp",
    gateway: "127.0.0.1",
    gatewayPort: port,
    internalAddress: "127.0.0.1",
    ports: [2121, 50000, 50001, 50002],
    leaseSeconds: 600,
    firstWaitMs: 20,
    attempts: 2,
    clock: timers,
    ...options,
  });
  try {
    await fn(gw, mapper, timers);
  } finally {
    await mapper.stop();
    await gw.close();
  }
}

Deno.test("natpmp wire: requests are encoded as RFC 6886 says", () => {
  assert.deepEqual([...encodeExternalAddressRequest()], [0, 0]);
  assert.deepEqual(
    [...encodeMapRequest("tcp", 2121, 2121, 3600)],
    [0, 2, 0, 0, 0x08, 0x49, 0x08, 0x49, 0, 0, 0x0e, 0x10],
  );
  assert.deepEqual([...encodeMapRequest("udp", 50000, 0, 0)], [
    0,
    1,
    0,
    0,
    0xc3,
    0x50,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  assert.throws(() => encodeMapRequest("tcp", 0, 1, 1), RangeError);
  assert.throws(() => encodeMapRequest("tcp", 1, 70000, 1), RangeError);
  assert.throws(() => encodeMapRequest("tcp", 1, 1, -1), RangeError);
});

Deno.test("natpmp wire: replies are decoded, and foreign bytes are not replies", () => {
  const ext = decodeExternalAddressReply(
    new Uint8Array([0, 128, 0, 0, 0, 0, 1, 0, 203, 0, 113, 7]),
  );
  assert.deepEqual(ext, { result: 0, epoch: 256, address: "203.0.113.7" });
  const map = decodeMapReply(
    new Uint8Array([0, 130, 0, 0, 0, 0, 0, 9, 0x08, 0x49, 0x08, 0x4a, 0, 0, 0x0e, 0x10]),
  );
  assert.deepEqual(map, {
    result: 0,
    epoch: 9,
    protocol: "tcp",
    internalPort: 2121,
    externalPort: 2122,
    lifetime: 3600,
  });
  // A short error reply is still an answer (only its header counts).
  assert.equal(decodeMapReply(new Uint8Array([0, 130, 0, 2, 0, 0, 0, 1]))?.result, 2);
  assert.equal(decodeMapReply(new Uint8Array([0, 130, 0, 0, 0, 0, 0, 1])), null);
  assert.equal(
    decodeMapReply(new Uint8Array([1, 130, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])),
    null,
  );
  assert.equal(decodeExternalAddressReply(new Uint8Array([0, 0])), null, "a request is no reply");
  assert.equal(
    decodeExternalAddressReply(
      new Uint8Array([0, 130, 0, 0, 0, 0, 0, 9, 0x08, 0x49, 0x08, 0x4a, 0, 0, 0x0e, 0x10]),
    ),
    null,
    "a mapping reply is no address reply",
  );
});

Deno.test("natpmp wire: the epoch check of RFC 6886 section 3.6", () => {
  const prev = { epoch: 1000, atMs: 0 };
  assert.equal(epochWentBack(prev, 1100, 100_000), false, "advanced with time");
  assert.equal(epochWentBack(prev, 1086, 100_000), false, "within 7/8 less 2 s");
  assert.equal(epochWentBack(prev, 1080, 100_000), true, "too slow: restarted");
  assert.equal(epochWentBack(prev, 3, 1_000), true, "went back");
});

Deno.test("defaultGateway reads the 0.0.0.0 route of /proc/net/route", () => {
  const table = [
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
    "eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
    "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0",
  ].join("\n");
  assert.equal(defaultGateway(table), "10.0.0.1");
  assert.equal(defaultGateway(table.split("\n").slice(0, 2).join("\n")), null);
});

Deno.test("portsToMap: control, implicit FTPS, then the passive range, once each", () => {
  assert.deepEqual(portsToMap({ control: 2121, implicit: 990, min: 50000, max: 50002 }), [
    2121,
    990,
    50000,
    50001,
    50002,
  ]);
  assert.deepEqual(portsToMap({ control: 50000, min: 50000, max: 50001 }), [50000, 50001]);
});

Deno.test("natpmp client: a silent gateway is a NoReplyError after the bounded tries", async () => {
  const gw = new FakeGateway();
  gw.silent = true;
  const port = await gw.listen();
  try {
    const client = new NatPmpClient({ gateway: "127.0.0.1", port, firstWaitMs: 20, attempts: 3 });
    const t0 = Date.now();
    await assert.rejects(client.externalAddress(), NoReplyError);
    // 20 + 40 + 80 ms of waiting, with slack.
    assert.ok(Date.now() - t0 >= 130 && Date.now() - t0 < 2000, `${Date.now() - t0} ms`);
    assert.equal(gw.requests.length, 0);
  } finally {
    await gw.close();
  }
});

Deno.test("port mapper: maps every port, reports the WAN address, renews at half the lease", async () => {
  await withLog(["pitifulnat", "portmap"], async (log) => {
    await withMapper({}, async (gw, mapper, timers) => {
      const report = await mapper.start();
      assert.equal(report.error, null);
      assert.equal(report.externalAddress, "203.0.113.7");
      assert.equal(mapper.externalAddress(), "203.0.113.7");
      assert.deepEqual(report.mapped.map((m) => [m.internalPort, m.externalPort]), [
        [2121, 2121],
        [50000, 50000],
        [50001, 50001],
        [50002, 50002],
      ]);
      assert.deepEqual(report.failed, []);
      assert.deepEqual([...gw.table.keys()].sort(), [2121, 50000, 50001, 50002]);
      // External port asked equal to the internal one, TCP, the lease asked.
      assert.deepEqual(gw.requests.find((r) => r[1] === 2121), [2, 2121, 2121, 600]);
      assert.deepEqual(timers.delays(), [300_000]);
      assert.match(log.map(text).join("\n"), /mapped 4 of 4 ports/);
      assert.deepEqual(describeReport(report), [
        "port mapping: gateway 127.0.0.1 answered over NAT-PMP, WAN address 203.0.113.7",
        "port mapping: mapped 4 of 4 TCP ports (2121, 50000-50002), lease 600 s",
      ]);
      const before = gw.requests.length;
      timers.fire();
      const again = await mapper.renewNow();
      assert.equal(again.mapped.length, 4);
      assert.equal(again.gatewayRestarted, false);
      assert.equal(gw.requests.length, before + 5, "one address request and four renewals");
      assert.equal(mapper.snapshot().rounds, 2);
      await mapper.stop();
      assert.equal(gw.table.size, 0, "stop deletes every mapping");
      assert.deepEqual(gw.requests.at(-1)?.slice(2), [0, 0], "a deletion: external 0, lifetime 0");
      assert.equal(timers.timers.size, 0);
      assert.deepEqual(mapper.snapshot().mappings, []);
    });
  });
});

Deno.test("port mapper: the gateway's shorter lease sets the renewal", async () => {
  await withMapper({}, async (_gw, mapper, timers) => {
    const report = await mapper.start();
    assert.equal(report.mapped[0].lifetimeSeconds, 60);
    assert.deepEqual(timers.delays(), [30_000]);
  }, (gw) => gw.maxLifetime = 60);
});

Deno.test("port mapper: a rebooted gateway (epoch back to 0) is found and mapped again", async () => {
  await withLog(["pitifulnat", "portmap"], async (log) => {
    await withMapper({}, async (gw, mapper, timers) => {
      await mapper.start();
      gw.reboot();
      assert.equal(gw.table.size, 0);
      timers.fire();
      const report = await mapper.renewNow();
      assert.equal(report.gatewayRestarted, true);
      assert.equal(report.mapped.length, 4);
      assert.equal(gw.table.size, 4, "the mappings are back");
      assert.equal(mapper.snapshot().gatewayRestarts, 1);
      assert.match(log.map(text).join("\n"), /lost its mappings \(restarted\): mapping again/);
    });
  });
});

Deno.test("port mapper: an external port other than the one asked is reported and logged", async () => {
  await withLog(["pitifulnat", "portmap"], async (log) => {
    await withMapper({}, async (_gw, mapper) => {
      const report = await mapper.start();
      assert.deepEqual(report.different, [{ internalPort: 2121, externalPort: 2122 }]);
      assert.ok(
        describeReport(report).includes(
          "port mapping: port 2121 is reachable on external port 2122",
        ),
      );
      assert.equal(mapper.externalPort(2121), 2122);
      assert.equal(mapper.externalPort(9), null);
      const logged = log.map(text).join("\n");
      assert.match(
        logged,
        /forwards external port 2122 to the control port 2121: clients on the internet must connect to 203\.0\.113\.7:2122/,
      );
      // Logged when it changes, not at every renewal.
      await mapper.renewNow();
      assert.equal(log.map(text).join("\n").match(/external port 2122/g)?.length, 1);
    }, (gw) => gw.taken.add(2121));
  });
});

Deno.test("port mapper: the cap limits the mappings and says how many were left", async () => {
  await withMapper({
    ports: portsToMap({ control: 2121, min: 50000, max: 50099 }),
    maxMappings: 10,
  }, async (gw, mapper) => {
    const report = await mapper.start();
    assert.equal(report.requested, 10);
    assert.equal(report.skipped, 91);
    assert.equal(report.mapped.length, 10);
    assert.equal(gw.table.size, 10);
    // The control port and 9 passive ports: passive mode keeps remote clients to those 9.
    assert.equal(mapper.mappedIn(50000, 50099), 9);
    assert.match(
      describeReport(report)[1],
      /mapped 10 of 10 TCP ports \(2121, 50000-50008\).*91 more over the cap/,
    );
  });
});

Deno.test("port mapper: a refusing gateway is reported, logged once, and retried later", async () => {
  await withLog(["pitifulnat", "portmap"], async (log) => {
    await withMapper({ retryMs: 5_000 }, async (gw, mapper, timers) => {
      const report = await mapper.start();
      assert.equal(report.mapped.length, 0);
      assert.equal(report.failed.length, 4);
      assert.match(report.error ?? "", /mapped none of 4 ports \(not authorized \/ refused\)/);
      assert.deepEqual(timers.delays(), [5_000]);
      timers.fire();
      await mapper.renewNow();
      const warnings = log.filter((r) => r.level === "warning").map(text);
      assert.equal(warnings.length, 1, warnings.join("\n"));
      gw.refuse = 0;
      timers.fire();
      const ok = await mapper.renewNow();
      assert.equal(ok.mapped.length, 4);
      assert.equal(ok.error, null);
    }, (gw) => gw.refuse = 2);
  });
});

Deno.test("port mapper: an absent gateway: start resolves with the error, nothing thrown", async () => {
  await withMapper({ retryMs: 5_000 }, async (gw, mapper, timers) => {
    const report = await mapper.start();
    assert.match(report.error ?? "", /no NAT-PMP reply from 127\.0\.0\.1:\d+ after 2 tries/);
    assert.equal(mapper.externalAddress(), null);
    assert.deepEqual(timers.delays(), [5_000]);
    assert.equal(gw.requests.length, 0);
    assert.match(describeReport(report)[0], /gateway 127\.0\.0\.1 \(NAT-PMP\): no NAT-PMP reply/);
  }, (gw) => gw.silent = true);
});

Deno.test("port mapper: a gateway that disappears mid-run keeps the last mappings listed", async () => {
  await withMapper({ retryMs: 5_000 }, async (gw, mapper, timers) => {
    await mapper.start();
    gw.silent = true;
    timers.fire();
    const report = await mapper.renewNow();
    assert.match(report.error ?? "", /no NAT-PMP reply/);
    assert.equal(mapper.externalAddress(), "203.0.113.7", "the last known address stays");
    assert.equal(mapper.snapshot().mappings.length, 4);
    assert.deepEqual(timers.delays(), [5_000]);
    gw.silent = false;
  });
});

Deno.test("port mapper: a failed round retries before the mappings held run out", async () => {
  // Lease 20 s, retry 60 s: the mappings still held would lapse before a retry at 60 s.
  await withMapper({ leaseSeconds: 20, retryMs: 60_000 }, async (gw, mapper, timers) => {
    await mapper.start();
    assert.deepEqual(timers.delays(), [10_000]);
    gw.silent = true;
    timers.fire();
    const report = await mapper.renewNow();
    assert.match(report.error ?? "", /no NAT-PMP reply/);
    assert.deepEqual(timers.delays(), [10_000], "half the lease held, not the 60 s retry");
  });
});

Deno.test("port mapper: bad options are refused at construction", () => {
  const base = { protocol: "natpmp" as const, gateway: "127.0.0.1", internalAddress: "127.0.0.1" };
  assert.throws(() => new PortMapper({ ...base, ports: [0] }), RangeError);
  assert.throws(() => new PortMapper({ ...base, ports: [1], leaseSeconds: 1 }), RangeError);
  assert.throws(() => new PortMapper({ ...base, ports: [1], maxMappings: 0 }), RangeError);
});

Deno.test("localAddressToward: the local address on the gateway's subnet", () => {
  const ifs = [
    { family: "IPv6", address: "::1", netmask: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff" },
    { family: "IPv4", address: "127.0.0.1", netmask: "255.0.0.0" },
    { family: "IPv4", address: "192.168.1.20", netmask: "255.255.255.0" },
  ];
  assert.equal(localAddressToward("192.168.1.1", ifs), "192.168.1.20");
  assert.equal(localAddressToward("127.0.0.1"), "127.0.0.1");
  assert.throws(() => localAddressToward("10.0.0.1", ifs), /no local IPv4 address/);
});

Deno.test("probe: the gateway's protocol and WAN address, and no mapping made", async () => {
  await withMapper({}, async (gw, mapper) => {
    const report = await mapper.probe();
    assert.equal(report.protocol, "natpmp");
    assert.equal(report.externalAddress, "203.0.113.7");
    assert.equal(report.error, null);
    assert.equal(gw.table.size, 0);
    assert.deepEqual(gw.requests, [[0]]);
  });
});

Deno.test("probe with a trial port: granted and removed again, or the refusal said", async () => {
  await withMapper({}, async (gw, mapper) => {
    const report = await mapper.probe({ tryPort: 2121 });
    assert.equal(report.error, null);
    assert.equal(report.trial, true);
    assert.equal(report.mapped.length, 1);
    assert.equal(gw.table.size, 0, "the trial mapping is removed");
    assert.ok(gw.requests.length >= 3, "address, map, unmap");
    assert.deepEqual(describeReport(report), [
      "port mapping: gateway 127.0.0.1 answered over NAT-PMP, WAN address 203.0.113.7",
      "port mapping: a trial mapping of port 2121 was granted and removed again",
    ]);
    assert.deepEqual(mapper.snapshot().mappings, [], "a probe holds nothing");
  });
  await withMapper({}, async (_gw, mapper) => {
    const report = await mapper.probe({ tryPort: 2121 });
    assert.match(report.error ?? "", /refused a trial mapping of port 2121 \(not authorized/);
    assert.match(describeReport(report)[0], /refused a trial mapping of port 2121/);
  }, (gw) => gw.refuse = 2);
});
