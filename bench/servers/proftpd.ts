/**
 * ProFTPD, run in the foreground (`-n`) from a config file with the system
 * user `pnbench` (mod_auth_unix: shadow file and crypt()). It forks per
 * session, so it is started under the subreaper launcher when CPU time is
 * measured.
 *
 * Debian's package conflicts with vsftpd's; set PROFTPD_BIN to a binary
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

/** ProFTPD. */
export const proftpd: BenchServer = {
  name: "proftpd",
  async prepare({ user, root }) {
    const found = await conflictingBinary("PROFTPD_BIN", {
      installed: "/usr/sbin/proftpd",
      pkg: "proftpd-core",
    });
    if ("missing" in found) return found.missing;
    bin = found.bin;
    const v = await runCommand([bin, "-v"], { timeoutMs: 10_000 });
    if (v.code !== 0) return `${bin} -v failed: ${v.stderr.trim().slice(0, 300)}`;
    const failed = await ensureSystemUser(user, root);
    if (failed) return failed;
    return {
      version: v.stdout.match(/Version (\S+)/)?.[1] ?? "unknown",
      passwordHash: `mod_auth_unix, ${await systemPasswordHash(user.name)}`,
    };
  },
  async start(o) {
    const config = `${o.dir}/proftpd.conf`;
    await Deno.writeTextFile(
      config,
      [
        "ServerType standalone",
        'ServerName "proftpd bench"',
        "DefaultAddress 127.0.0.1",
        "SocketBindTight on",
        `Port ${o.port}`,
        "UseIPv6 off",
        `PassivePorts ${o.pasvMin} ${o.pasvMax}`,
        "User nobody",
        "Group nogroup",
        // Unlimited in practice, as the others.
        "MaxInstances 4000",
        `PidFile ${o.dir}/proftpd.pid`,
        `ScoreboardFile ${o.dir}/proftpd.scoreboard`,
        // mod_delay pads every login to hide timing; the others do not.
        "DelayTable none",
        "WtmpLog off",
        "UseReverseDNS off",
        "AuthOrder mod_auth_unix.c",
        // A transfer log, as the others keep.
        `TransferLog ${o.dir}/xferlog`,
        `SystemLog ${o.dir}/proftpd.log`,
        "<Directory />",
        "  AllowOverwrite on",
        "</Directory>",
        "",
      ].join("\n"),
    );
    return await spawnServer([bin, "-n", "-c", config], {
      port: o.port,
      subreaper: o.account,
      cwd: o.dir,
    });
  },
};
