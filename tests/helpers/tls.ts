/** Test helper: certificates made with openssl for the FTPS tests. */
import assert from "node:assert/strict";
import { run } from "./server.ts";

/**
 * Makes a self-signed certificate and its key in `dir` (cert.pem, key.pem).
 * `names` go into subjectAltName (none: no such extension).
 */
export async function makeCertificate(
  dir: string,
  options: { cn?: string; names?: string[]; days?: number; rsa?: boolean } = {},
): Promise<{ certificate: string; key: string }> {
  const certificate = `${dir}/cert.pem`;
  const key = `${dir}/key.pem`;
  const names = options.names ?? ["DNS:localhost", "IP:127.0.0.1"];
  const r = await run("openssl", [
    "req",
    "-x509",
    ...(options.rsa
      ? ["-newkey", "rsa:2048"]
      : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
    "-nodes",
    "-keyout",
    key,
    "-out",
    certificate,
    "-days",
    String(options.days ?? 30),
    "-subj",
    `/CN=${options.cn ?? "localhost"}`,
    ...(names.length ? ["-addext", `subjectAltName=${names.join(",")}`] : []),
  ], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  return { certificate, key };
}
