/**
 * ProFTPD. Placeholder while the adapter is written.
 * @module
 */
import type { BenchServer } from "./common.ts";

/** ProFTPD. */
export const proftpd: BenchServer = {
  name: "proftpd",
  prepare() {
    return Promise.resolve("not installed");
  },
  start() {
    return Promise.reject(new Error("not installed"));
  },
};
