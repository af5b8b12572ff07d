import assert from "node:assert/strict";
import { unreachableFromInternet } from "../../src/nat/address_kind.ts";

Deno.test("unreachableFromInternet: which addresses no internet client can reach, and why", () => {
  const kinds: [string, string | null][] = [
    ["5.6.7.8", null],
    ["2a01:4f8::5", null],
    ["100.64.3.4", "cgnat"],
    ["100.127.255.254", "cgnat"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["fd00::1", "private"],
    ["::ffff:192.168.1.1", "private"],
    ["127.0.0.1", "loopback"],
    ["::1", "loopback"],
    ["169.254.1.1", "link-local"],
    ["fe80::1", "link-local"],
    ["192.0.2.1", "documentation"],
    ["198.51.100.20", "documentation"],
    ["203.0.113.7", "documentation"],
    ["2001:db8::5", "documentation"],
    ["0.0.0.0", "reserved"],
    ["240.0.0.1", "reserved"],
  ];
  for (const [address, kind] of kinds) {
    assert.equal(unreachableFromInternet(address)?.kind ?? null, kind, address);
  }
  assert.match(
    unreachableFromInternet("100.64.3.4")!.text,
    /^100\.64\.3\.4 is in 100\.64\.0\.0\/10/,
  );
});
