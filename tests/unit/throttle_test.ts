import assert from "node:assert/strict";
import { LoginThrottle } from "../../src/auth/throttle.ts";

Deno.test("LoginThrottle: failures in the window ban, the ban expires, success forgets", () => {
  let now = 0;
  const t = new LoginThrottle({ maxFailures: 3, windowMs: 1000, banMs: 5000, now: () => now });
  assert.equal(t.fail("a"), false);
  assert.equal(t.fail("a"), false);
  now = 1500; // the first two fell out of the window
  assert.equal(t.fail("a"), false);
  assert.equal(t.bannedFor("a"), 0);
  assert.equal(t.fail("a"), false);
  assert.equal(t.fail("a"), true, "third failure within the window starts a ban");
  assert.equal(t.bannedFor("a"), 5000);
  assert.equal(t.bannedFor("b"), 0, "other addresses are not affected");
  now = 6499;
  assert.equal(t.bannedFor("a"), 1);
  t.succeed("a");
  assert.equal(t.bannedFor("a"), 1, "a success during a ban does not lift it");
  now = 6500;
  assert.equal(t.bannedFor("a"), 0);
  t.fail("b");
  t.succeed("b");
  t.fail("b");
  t.fail("b");
  assert.equal(t.bannedFor("b"), 0, "success reset the count");
});

Deno.test("LoginThrottle: tracked addresses are bounded", () => {
  const t = new LoginThrottle({
    maxFailures: 2,
    windowMs: 1000,
    banMs: 1000,
    maxTracked: 3,
    now: () => 0,
  });
  for (const a of ["1", "2", "3", "4"]) t.fail(a);
  assert.equal(t.fail("1"), false, "the oldest entry was dropped, so its count restarted");
  assert.equal(t.fail("4"), true);
});
