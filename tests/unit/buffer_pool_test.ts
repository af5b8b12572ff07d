import assert from "node:assert/strict";
import {
  BUFFER_SIZE,
  giveBuffer,
  pooledBuffers,
  takeBuffer,
  trimPool,
} from "../../src/ftp/transfer_io.ts";

Deno.test("buffer pool: a burst's buffers are reused, capped at 32, and let go 30 s after the last take", () => {
  const taken = Array.from({ length: 40 }, () => takeBuffer());
  assert.equal(new Set(taken).size, 40, "each transfer gets its own buffer");
  for (const b of taken) giveBuffer(b);
  assert.equal(pooledBuffers(), 32, "the pool keeps at most 32 buffers");
  giveBuffer(new Uint8Array(BUFFER_SIZE / 2)); // not a pool buffer: dropped
  assert.equal(pooledBuffers(), 32);
  const again = takeBuffer();
  assert.ok(taken.includes(again), "a returned buffer is handed out again");
  const takenAt = Date.now();
  giveBuffer(again);
  assert.ok(trimPool(takenAt + 1_000) > 28_000, "too early to trim");
  assert.equal(pooledBuffers(), 32);
  assert.equal(trimPool(takenAt + 30_001), 0);
  assert.equal(pooledBuffers(), 0);
});
