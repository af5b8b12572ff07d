/**
 * Test helpers for log output: capture the records one category logs
 * while a test runs, and a record's text.
 */
import { configure, type LogRecord, reset } from "@logtape/logtape";

/** Captures what `category` logs (debug and up) while `fn` runs; logging is reset after. */
export async function withLog(
  category: string[],
  fn: (records: LogRecord[]) => Promise<void>,
): Promise<void> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { buffer: (r: LogRecord) => records.push(r) },
    loggers: [
      { category, sinks: ["buffer"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "error" },
    ],
  });
  try {
    await fn(records);
  } finally {
    await reset();
  }
}

/** The text of a log record, its properties filled in. */
export function recordText(r: LogRecord): string {
  return r.message.map((part) => String(part)).join("");
}
