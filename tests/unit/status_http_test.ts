/**
 * The status listener's rules, request by request: read-only, loopback
 * without a password, everyone else with a status user (HTTP Basic).
 */
import assert from "node:assert/strict";
import { hashPassword } from "../../src/auth/password.ts";
import { parseConfig } from "../../src/config/load.ts";
import { handleStatusRequest, type StatusUser } from "../../src/observe/http.ts";
import { snapshots } from "../helpers/snapshot.ts";

const snap = snapshots(new Date().toISOString()).busySnapshot();
const users: StatusUser[] = [{
  name: "admin",
  password: await hashPassword("s3cret", { cost: 10 }),
}];

function ask(path: string, peer: string, init: RequestInit = {}): Promise<Response> {
  return handleStatusRequest(new Request(`http://192.168.1.5:2180${path}`, init), peer, {
    listen: "192.168.1.5",
    users: () => users,
    handlers: {
      snapshot: () => snap,
      health: () => Promise.resolve({ ok: false, text: "the public address is not known yet" }),
    },
  });
}

function basic(user: string, password: string): HeadersInit {
  return { authorization: `Basic ${btoa(`${user}:${password}`)}` };
}

Deno.test("status http: loopback and the listener's own address need no password", async () => {
  for (const peer of ["127.0.0.1", "::1", "192.168.1.5"]) {
    const r = await ask("/status", peer);
    assert.equal(r.status, 200, peer);
    assert.equal((await r.json()).schema, 1);
  }
});

Deno.test("status http: a LAN peer needs a status user: none or a wrong password gets 401", async () => {
  const none = await ask("/", "192.168.1.9");
  assert.equal(none.status, 401);
  assert.match(none.headers.get("www-authenticate") ?? "", /^Basic realm="pitifulnat status"/);
  await none.body?.cancel();
  for (const [u, p] of [["admin", "wrong"], ["nobody", "s3cret"], ["admin", ""]]) {
    const r = await ask("/status", "192.168.1.9", { headers: basic(u, p) });
    assert.equal(r.status, 401, `${u}:${p}`);
    await r.body?.cancel();
  }
  const ok = await ask("/", "192.168.1.9", { headers: basic("admin", "s3cret") });
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(ok.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  assert.match(await ok.text(), /Remote clients are told 5\.6\.7\.8/);
});

Deno.test("status http: read-only (405 but for GET and HEAD); /health is 503 until it is ok", async () => {
  for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
    const r = await ask("/status", "127.0.0.1", { method });
    assert.equal(r.status, 405, method);
    assert.equal(r.headers.get("allow"), "GET, HEAD");
    await r.body?.cancel();
  }
  const head = await ask("/metrics", "127.0.0.1", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
  const health = await ask("/health", "127.0.0.1");
  assert.equal(health.status, 503);
  assert.equal(await health.text(), "the public address is not known yet\n");
  const fragment = await ask("/fragment", "127.0.0.1");
  assert.doesNotMatch(await fragment.text(), /<html/);
});

Deno.test("config: a status page beyond loopback without status.users is a config error", () => {
  assert.throws(
    () => parseConfig("status: { address: 0.0.0.0, port: 2180 }\n", { file: "c.yaml" }),
    /c\.yaml:1:20: status\.address: expected status\.users .* when the status page is open beyond loopback/,
  );
  const ok = parseConfig(
    `status: { address: 0.0.0.0, port: 2180, users: [{ name: admin, password: "${
      users[0].password
    }" }] }\n`,
    { file: "c.yaml" },
  );
  assert.equal(ok.status.users?.[0].name, "admin");
});
