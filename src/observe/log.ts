/**
 * Logging setup: LogTape with one text line per record on stderr (or a
 * file). Categories start with "pitifulnat".
 * @module
 */
import { configure, getTextFormatter, type LogRecord, reset, type Sink } from "@logtape/logtape";

/** Log levels accepted in the config. */
export type Level = "debug" | "info" | "warning" | "error";

const formatter = getTextFormatter({
  timestamp: "date-time-tz",
  // Plain values keep lines greppable: user=alice, not user="alice".
  value: (v: unknown) => typeof v === "string" ? v : JSON.stringify(v) ?? String(v),
});
const encoder = new TextEncoder();

function stderrSink(record: LogRecord): void {
  try {
    Deno.stderr.writeSync(encoder.encode(formatter(record)));
  } catch {
    // A broken log destination must never stop the server.
  }
}

function fileSink(path: string): Sink {
  let file: Deno.FsFile | null = null;
  return (record: LogRecord) => {
    try {
      file ??= Deno.openSync(path, { append: true, create: true });
      file.writeSync(encoder.encode(formatter(record)));
    } catch {
      file = null;
      stderrSink(record);
    }
  };
}

/** Configures logging for the process; safe to call again (reconfigures). */
export async function setupLogging(options: { level: Level; file?: string }): Promise<void> {
  await reset();
  await configure({
    reset: true,
    sinks: { main: options.file ? fileSink(options.file) : stderrSink },
    loggers: [
      { category: ["pitifulnat"], sinks: ["main"], lowestLevel: options.level },
      { category: ["logtape", "meta"], sinks: ["main"], lowestLevel: "warning" },
    ],
  });
}
