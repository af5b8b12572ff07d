/**
 * Pure-FTPd. Placeholder while the adapter is written.
 * @module
 */
import type { BenchServer } from "./common.ts";

/** Pure-FTPd. */
export const pureFtpd: BenchServer = {
  name: "pure-ftpd",
  prepare() {
    return Promise.resolve("not installed");
  },
  start() {
    return Promise.reject(new Error("not installed"));
  },
};
