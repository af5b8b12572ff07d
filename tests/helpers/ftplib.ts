/**
 * Helpers shared by the tests that drive a server or proxy with Python's
 * ftplib and by those that look at a greeting byte for byte.
 * @module
 */
import assert from "node:assert/strict";
import { run } from "./server.ts";

/**
 * Python lines (for a script with `ftp` logged in and an `out` dict) that
 * start a binary RETR of big.bin, read about 1 MB, then ABOR it: `out["got"]`
 * is the bytes read, `out["abort"]` the replies to the ABOR (a 426 first
 * when the server sends one), `out["noop"]` the reply to a NOOP after.
 */
export const ABORT_BIG_RETR = `
ftp.voidcmd("TYPE I")
conn = ftp.transfercmd("RETR big.bin")
got = 0
while got < 1_000_000:
    chunk = conn.recv(65536)
    if not chunk:
        break
    got += len(chunk)
out["got"] = got
replies = [ftp.abort()]
if replies[0].startswith("426"):
    replies.append(ftp.getresp())
conn.close()
out["abort"] = replies
out["noop"] = ftp.voidcmd("NOOP")
`;

/**
 * Runs `body` in Python with `ftp` connected to 127.0.0.1:`port` and logged
 * in (anonymously unless `login` is given), and returns the JSON of its `out`
 * dict. With `trustPasvAddress`, ftplib uses the address in 227 replies, as
 * most clients do (it ignores it by default).
 */
export async function ftplibJson(
  port: number,
  body: string,
  options: { login?: { user: string; password: string }; trustPasvAddress?: boolean } = {},
): Promise<Record<string, unknown>> {
  const script = `
import ftplib, io, json, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.trust_server_pasv_ipv4_address = ${options.trustPasvAddress ? "True" : "False"}
ftp.login(*sys.argv[2:4])
out = {}
${body}
print(json.dumps(out))
`;
  const login = options.login ? [options.login.user, options.login.password] : [];
  const r = await run("python3", ["-c", script, String(port), ...login], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** Connects to 127.0.0.1:`port` and reads the greeting bytes until its last line, as text. */
export async function rawGreeting(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    let text = "";
    const buf = new Uint8Array(4096);
    const deadline = Date.now() + 5000;
    while (!/(^|\n)\d{3} [^\n]*\r\n$/.test(text) && Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    conn.close();
  }
}
