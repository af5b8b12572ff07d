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
  type TlsFiles,
  which,
} from "./common.ts";

const BIN = "/usr/sbin/vsftpd";

/**
 * FTPS for the workloads over TLS: logins and data must be encrypted.
 * `require_ssl_reuse` keeps its default (YES): a data connection must resume
 * the control connection's TLS session. curl does (workload 9); Python's
 * ftplib does not and gets `522 SSL connection failed: session reuse
 * required`, but workload 10 opens no data connection. There is no
 * `ssl_tlsv1_2` line: Debian 12's vsftpd 3.0.3 does not know it and exits
 * with code 2, printing nothing; with its defaults and OpenSSL 3, curl and
 * ftplib get TLS 1.3 (TLS_AES_256_GCM_SHA384), as from pitifulnat.
 */
function tlsLines(tls: TlsFiles): string[] {
  return [
    "ssl_enable=YES",
    `rsa_cert_file=${tls.certificate}`,
    `rsa_private_key_file=${tls.key}`,
    "force_local_logins_ssl=YES",
    "force_local_data_ssl=YES",
  ];
}

/** vsftpd from the Debian package. */
export const vsftpd: BenchServer = {
  name: "vsftpd",
  tls: true,
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
        ...(o.tls ? tlsLines(o.tls) : []),
        "",
      ].join("\n"),
    );
    return await spawnServer([BIN, config], { port: o.port, subreaper: o.account });
  },
};
