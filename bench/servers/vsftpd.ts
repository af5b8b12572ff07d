/**
 * vsftpd, the reference: run from a config file in the foreground
 * (listen=YES, background=NO) with a local system user `pnbench` whose
 * password the benchmark sets. It forks per session, so it is started under
 * the subreaper launcher when CPU time is measured.
 * @module
 */
import {
  type BenchServer,
  ensureSystemUser,
  runCommand,
  spawnServer,
  systemPasswordHash,
  which,
} from "./common.ts";

const BIN = "/usr/sbin/vsftpd";

/** vsftpd from the Debian package. */
export const vsftpd: BenchServer = {
  name: "vsftpd",
  async prepare({ user, root }) {
    if (!await which(BIN)) return `${BIN} is not installed (apt-get install vsftpd)`;
    const failed = await ensureSystemUser(user, root);
    if (failed) return failed;
    const pkg = await runCommand(["dpkg-query", "-W", "-f", "${Version}", "vsftpd"], {
      timeoutMs: 10_000,
    });
    await Deno.mkdir("/var/run/vsftpd/empty", { recursive: true });
    return {
      version: pkg.code === 0 ? pkg.stdout.trim() : "unknown",
      passwordHash: `PAM, ${await systemPasswordHash(user.name)}`,
    };
  },
  async start(o) {
    const config = `${o.dir}/vsftpd.conf`;
    await Deno.writeTextFile(
      config,
      [
        "listen=YES",
        "listen_ipv6=NO",
        "background=NO",
        "listen_address=127.0.0.1",
        `listen_port=${o.port}`,
        "anonymous_enable=NO",
        "local_enable=YES",
        "write_enable=YES",
        "local_umask=022",
        `local_root=${o.root}`,
        "pasv_enable=YES",
        `pasv_min_port=${o.pasvMin}`,
        `pasv_max_port=${o.pasvMax}`,
        // Unlimited, as pitifulnat is configured; the defaults are 2000 and 50.
        "max_clients=0",
        "max_per_ip=0",
        // As Debian ships it: a transfer log.
        "xferlog_enable=YES",
        `vsftpd_log_file=${o.dir}/vsftpd.log`,
        `xferlog_file=${o.dir}/xferlog`,
        "pam_service_name=vsftpd",
        "secure_chroot_dir=/var/run/vsftpd/empty",
        // Containers refuse the seccomp filter and the namespaces vsftpd
        // would create per session.
        "seccomp_sandbox=NO",
        "isolate=NO",
        "isolate_network=NO",
        "",
      ].join("\n"),
    );
    return await spawnServer([BIN, config], { port: o.port, subreaper: o.account });
  },
};
