import assert from "node:assert/strict";
import { Activity, RING_SIZE, THROUGHPUT_POINTS } from "../../src/observe/activity.ts";

Deno.test("activity: rings keep the last 50, throughput points are deltas, at most an hour", () => {
  const a = new Activity();
  for (let i = 0; i < RING_SIZE + 7; i++) {
    a.loginFailures.push({ at: `t${i}`, addr: "198.51.100.1", user: `u${i}` });
  }
  const failures = a.loginFailures.list();
  assert.equal(failures.length, RING_SIZE);
  assert.equal(failures[0].user, "u7", "the oldest are dropped first");
  let total = { in: 0, out: 0 };
  a.start(() => total);
  a.stop();
  for (let i = 1; i <= THROUGHPUT_POINTS + 5; i++) {
    total = { in: total.in + i, out: total.out + 2 * i };
    a.sample(total, new Date(Date.UTC(2026, 0, 1, 0, 0, i * 10)));
  }
  const { intervalSeconds, points } = a.throughput();
  assert.equal(intervalSeconds, 10);
  assert.equal(points.length, THROUGHPUT_POINTS);
  assert.deepEqual(points.at(-1), {
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, (THROUGHPUT_POINTS + 5) * 10)).toISOString(),
    in: THROUGHPUT_POINTS + 5,
    out: 2 * (THROUGHPUT_POINTS + 5),
  });
});
