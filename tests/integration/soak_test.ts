/**
 * A bounded soak in the default run: 40 concurrent sessions, 10 random
 * operations each, with real transfers both ways, passive and active, REST,
 * ABOR, listings and directories. Every reply must be the expected one, every
 * session must end, and the process must hold no more file descriptors than
 * before. `deno task soak` runs the long form (bench/soak.ts).
 */
import assert from "node:assert/strict";
import { soak } from "../../bench/soak.ts";

Deno.test("soak: 40 sessions x 10 random operations, no unexpected reply, no leaked session or fd", async () => {
  const r = await soak({ sessions: 40, ops: 10, seed: 2024, deadlineMs: 20_000 });
  assert.deepEqual(r.unexpected, []);
  assert.equal(r.ops, 400, "every operation ran within the time limit");
  assert.ok(r.bytesDown > 1_000_000 && r.bytesUp > 100_000, `down ${r.bytesDown}, up ${r.bytesUp}`);
  for (const kind of ["retr", "stor", "rest", "list", "abor"]) {
    assert.ok((r.byKind[kind] ?? 0) > 0, `no ${kind} operation ran: ${JSON.stringify(r.byKind)}`);
  }
  assert.equal(r.sessionsLeft, 0);
  assert.ok(r.fdsAfter <= r.fdsBefore + 5, `fds: ${r.fdsBefore} before, ${r.fdsAfter} after`);
});
