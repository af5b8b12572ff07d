import assert from "node:assert/strict";
import { hashPassword, parseHash, verifyPassword } from "../../src/auth/password.ts";
import { UserDb } from "../../src/auth/users.ts";
import { configSchema } from "../../src/config/schema.ts";

Deno.test("scrypt hash: salted, verifies, rejects wrong password", async () => {
  const a = await hashPassword("s3cret");
  const b = await hashPassword("s3cret");
  assert.match(a, /^scrypt\$4096\$8\$1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  assert.notEqual(a, b, "two hashes of one password differ (salt)");
  assert.equal(await verifyPassword("s3cret", a), true);
  assert.equal(await verifyPassword("s3cret ", a), false);
  assert.equal(await verifyPassword("s3cret", "plain"), false);
  assert.equal(
    parseHash("scrypt$3$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAA"),
    null,
    "N not a power of 2",
  );
});

Deno.test("UserDb: users, anonymous, unknown users", async () => {
  const config = configSchema.parse({
    users: [{
      name: "bob",
      password: await hashPassword("pw"),
      home: "/srv/bob",
      permissions: ["read", "write"],
    }],
    anonymous: { enabled: true, home: "/srv/pub" },
  });
  const db = new UserDb(config);
  const bob = await db.authenticate("bob", "pw");
  assert.equal(bob?.name, "bob");
  assert.deepEqual([...bob!.permissions], ["read", "write"]);
  assert.equal(await db.authenticate("bob", "nope"), null);
  assert.equal(await db.authenticate("nobody", "pw"), null);
  const anon = await db.authenticate("anonymous", "me@example.net");
  assert.equal(anon?.anonymous, true);
  assert.deepEqual([...anon!.permissions], ["read"]);
  assert.equal(db.isAnonymous("FTP"), true);
  const closed = new UserDb(configSchema.parse({}));
  assert.equal(await closed.authenticate("anonymous", "x"), null);
});

Deno.test("hash cost: N follows --cost, bad costs refused, old hashes still verify", async () => {
  const h12 = await hashPassword("pw", { cost: 12 });
  assert.match(h12, /^scrypt\$4096\$8\$1\$/);
  assert.equal(await verifyPassword("pw", h12), true);
  await assert.rejects(() => hashPassword("pw", { cost: 9 }), RangeError);
  await assert.rejects(() => hashPassword("pw", { cost: 12.5 }), RangeError);
});

Deno.test("an unknown user costs as much as the costliest configured hash, not the default", async () => {
  // A hash made with a higher cost than today's default (an older config).
  const config = configSchema.parse({
    users: [{ name: "old", password: await hashPassword("pw", { cost: 15 }), home: "/srv/old" }],
  });
  const db = new UserDb(config);
  const timed = async (name: string) => {
    const t0 = performance.now();
    assert.equal(await db.authenticate(name, "wrong"), null);
    return performance.now() - t0;
  };
  await timed("nobody"); // makes the dummy hash
  // Medians of 3: N=2^15 takes 8 times the default's N=2^12, so a dummy at
  // the default cost would show as well under half the time.
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[1];
  const wrong = median([await timed("old"), await timed("old"), await timed("old")]);
  const unknown = median([await timed("nobody"), await timed("nobody"), await timed("nobody")]);
  assert.ok(
    unknown > wrong * 0.5,
    `unknown user ${unknown.toFixed(1)} ms, wrong password ${wrong.toFixed(1)} ms`,
  );
});
