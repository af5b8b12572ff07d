/**
 * PCP (RFC 6887): the MAP and ANNOUNCE wire format, and the port mapper
 * against a tiny fake PCP server on loopback UDP (nonces checked, epoch
 * reset on "reboot").
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import {
  decodePcpReply,
  encodeAnnounce,
  encodeMap,
  mappedV4,
  pcpResultText,
} from "../../src/nat/portmap/pcp.ts";
import { describeReport, PortMapper } from "../../src/nat/portmap/mod.ts";

/** A PCP server on 127.0.0.1 with a mapping table keyed by internal port. */
class FakePcp {
  readonly sock = dgram.createSocket("udp4");
  bootAt = Date.now() / 1000 - 500;
  readonly table = new Map<number, { nonce: string; lifetime: number }>();
  readonly ops: number[] = [];
  /** The client address the server "sees" (a mismatch gives result 12). */
  sees = "127.0.0.1";

  async listen(): Promise<number> {
    this.sock.on("message", (msg, rinfo) => this.#answer(new Uint8Array(msg), rinfo));
    await new Promise<void>((resolve) => this.sock.bind(0, "127.0.0.1", resolve));
    return this.sock.address().port;
  }

  reboot(): void {
    this.table.clear();
    this.bootAt = Date.now() / 1000;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.sock.close(() => resolve()));
  }

  #answer(req: Uint8Array, to: dgram.RemoteInfo): void {
    const v = new DataView(req.buffer, req.byteOffset, req.byteLength);
    const op = req[1];
    this.ops.push(op);
    const out = new Uint8Array(op === 1 ? 60 : 24);
    const o = new DataView(out.buffer);
    out[0] = 2;
    out[1] = 0x80 | op;
    o.setUint32(8, Math.floor(Date.now() / 1000 - this.bootAt));
    const client = Array.from(req.subarray(20, 24)).join(".");
    if (client !== this.sees) out[3] = 12;
    if (op === 1) {
      out.set(req.subarray(24, 60), 24);
      const internal = v.getUint16(40);
      const lifetime = v.getUint32(4);
      const nonce = Array.from(req.subarray(24, 36)).join(",");
      const held = this.table.get(internal);
      if (out[3] === 0 && held && held.nonce !== nonce) out[3] = 2;
      if (out[3] === 0) {
        if (lifetime === 0) this.table.delete(internal);
        else this.table.set(internal, { nonce, lifetime });
        o.setUint32(4, lifetime);
        o.setUint16(42, internal);
        out.set(mappedV4("203.0.113.5"), 44);
      }
    }
    this.sock.send(out, to.port, to.address);
  }
}

Deno.test("pcp wire: MAP and ANNOUNCE requests as RFC 6887 lays them out", () => {
  const nonce = new Uint8Array(12).fill(7);
  const req = encodeMap({
    client: "10.0.0.2",
    nonce,
    internalPort: 2121,
    externalPort: 2121,
    lifetime: 600,
  });
  assert.equal(req.length, 60);
  assert.deepEqual([...req.subarray(0, 8)], [2, 1, 0, 0, 0, 0, 2, 0x58]);
  assert.deepEqual([...req.subarray(8, 24)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 2]);
  assert.deepEqual([...req.subarray(24, 36)], [...nonce]);
  assert.equal(req[36], 6, "TCP");
  assert.deepEqual([...req.subarray(40, 44)], [0x08, 0x49, 0x08, 0x49]);
  assert.deepEqual([...req.subarray(54, 60)], [255, 255, 0, 0, 0, 0], "any IPv4 suggested");
  const ann = encodeAnnounce("10.0.0.2");
  assert.equal(ann.length, 24);
  assert.deepEqual([...ann.subarray(0, 2)], [2, 0]);
  assert.throws(() => mappedV4("::1"), TypeError);
});

Deno.test("pcp wire: replies decoded; a request or a NAT-PMP reply is not one", () => {
  const reply = new Uint8Array(60);
  reply[0] = 2;
  reply[1] = 0x81;
  const v = new DataView(reply.buffer);
  v.setUint32(4, 120);
  v.setUint32(8, 33);
  v.setUint16(40, 2121);
  v.setUint16(42, 2122);
  reply.set(mappedV4("203.0.113.5"), 44);
  const r = decodePcpReply(reply);
  assert.equal(r?.op, 1);
  assert.equal(r?.lifetime, 120);
  assert.equal(r?.epoch, 33);
  assert.deepEqual(
    { ...r?.map, nonce: undefined },
    { nonce: undefined, internalPort: 2121, externalPort: 2122, externalAddress: "203.0.113.5" },
  );
  assert.equal(decodePcpReply(encodeAnnounce("10.0.0.2")), null);
  assert.equal(decodePcpReply(new Uint8Array([0, 128, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4])), null);
  assert.match(pcpResultText(12), /address mismatch/);
});

/** A fake PCP server and a mapper using it. */
async function withPcp(
  fn: (pcp: FakePcp, mapper: PortMapper) => Promise<void>,
  internalAddress = "127.0.0.1",
): Promise<void> {
  const pcp = new FakePcp();
  const port = await pcp.listen();
  const mapper = new PortMapper({
    protocol: "pcp",
    gateway: "127.0.0.1",
    gatewayPort: port,
    internalAddress,
    ports: [2121, 50000],
    leaseSeconds: 300,
    firstWaitMs: 20,
    attempts: 2,
  });
  try {
    await fn(pcp, mapper);
  } finally {
    await mapper.stop();
    await pcp.close();
  }
}

Deno.test("pcp mapper: maps with the address from the MAP reply, renews with the same nonce, deletes", async () => {
  await withPcp(async (pcp, mapper) => {
    const report = await mapper.start();
    assert.equal(report.error, null, JSON.stringify(report));
    assert.equal(report.protocol, "pcp");
    assert.equal(report.externalAddress, "203.0.113.5");
    assert.equal(mapper.externalAddress(), "203.0.113.5");
    assert.deepEqual([...pcp.table.keys()].sort(), [2121, 50000]);
    assert.match(describeReport(report)[0], /answered over PCP, WAN address 203\.0\.113\.5/);
    // A renewal with another nonce would be refused (result 2) by the fake.
    const again = await mapper.renewNow();
    assert.equal(again.failed.length, 0, JSON.stringify(again));
    await mapper.stop();
    assert.equal(pcp.table.size, 0);
  });
});

Deno.test("pcp mapper: a restarted server (epoch back) is mapped again", async () => {
  await withPcp(async (pcp, mapper) => {
    await mapper.start();
    pcp.reboot();
    const report = await mapper.renewNow();
    assert.equal(report.gatewayRestarted, true);
    assert.equal(pcp.table.size, 2);
  });
});

Deno.test("pcp mapper: the wrong client address is an address mismatch, reported", async () => {
  await withPcp(async (_pcp, mapper) => {
    const report = await mapper.start();
    assert.equal(report.mapped.length, 0);
    assert.match(report.error ?? "", /address mismatch/);
  }, "10.9.9.9");
});
