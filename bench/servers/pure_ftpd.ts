/**
 * Pure-FTPd, run in the foreground from its command line with the system
 * user `pnbench` (`-l unix`: shadow file and crypt()). It forks per session,
 * so it is started under the subreaper launcher when CPU time is measured.
 *
 * Debian's package conflicts with vsftpd's; set PUREFTPD_BIN to a binary
 * unpacked from the package to run both (see bench/README.md).
 * @module
 */
import {
  type BenchServer,
  conflictingBinary,
  ensureSystemUser,
  runCommand,
  spawnServer,
  systemPasswordHash,
} from "./common.ts";

/** The binary found by prepare(), which always runs before start(). */
let bin = "";

/** Pure-FTPd. */
export const pureFtpd: BenchServer = {
  name: "pure-ftpd",
  async prepare({ user, root }) {
    const found = await conflictingBinary("PUREFTPD_BIN", {
      installed: "/usr/sbin/pure-ftpd",
      pkg: "pure-ftpd",
    });
    if ("missing" in found) return found.missing;
    bin = found.bin;
    const failed = await ensureSystemUser(user, root);
    if (failed) return failed;
    const help = await runCommand([bin, "--help"], { timeoutMs: 10_000 });
    const version = `${help.stdout}${help.stderr}`.match(/v(\d[\w.]*)/)?.[1] ?? "unknown";
    return {
      version,
      passwordHash: `getspnam + ${await systemPasswordHash(user.name)}`,
    };
  },
  async start(o) {
    return await spawnServer([
      bin,
      "--bind",
      `127.0.0.1,${o.port}`,
      "--passiveportrange",
      `${o.pasvMin}:${o.pasvMax}`,
      "--login",
      "unix",
      "--noanonymous",
      "--dontresolve",
      // Unlimited in practice, as the others; the defaults are 50 and none.
      "--maxclientsnumber",
      "4000",
      "--maxclientsperip",
      "4000",
      // A transfer log, as the others keep.
      "--altlog",
      `clf:${o.dir}/xferlog`,
    ], { port: o.port, subreaper: o.account, cwd: o.dir });
  },
};
