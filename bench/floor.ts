/**
 * The Deno floor: the least FTP a Deno program can serve the benchmark's
 * transfer workloads with, on the same native APIs pitifulnat uses, so the
 * report can say how far pitifulnat is above what Deno itself costs here.
 *
 *     deno run --allow-net --allow-read --allow-write bench/floor.ts \
 *         PORT PASV_MIN PASV_MAX ROOT USER PASSWORD
 *
 * One session per control connection, commands answered from a switch:
 * USER, PASS (a plain compare, no hash), TYPE, PWD, CWD, SIZE, PASV, EPSV,
 * RETR, STOR, QUIT; anything else gets 502. No logging, no path checks
 * (paths are taken below ROOT as sent), no timeouts, no limits. The data
 * path is the three loops the brief names:
 *
 * - RETR: file -> socket through one reused 1 MiB buffer (`readSync` from
 *   the page cache, awaited socket writes);
 * - STOR: socket -> file through the same buffer (`writeSync`), then one
 *   `fdatasync` before 226, as pitifulnat promises;
 * - small files: the same RETR loop, so a 16 KiB file is accept -> one
 *   read -> one write -> close.
 *
 * A session keeps its passive listener for the next PASV/EPSV (as
 * pitifulnat does), so each small file costs one accept, not a bind.
 * Not a server to run: the benchmark's measuring stick (bench/servers/floor.ts).
 * @module
 */

const [portArg, minArg, maxArg, root, userName, password] = Deno.args;
if (!password) {
  console.error("usage: floor.ts PORT PASV_MIN PASV_MAX ROOT USER PASSWORD");
  Deno.exit(2);
}
const PASV_MIN = Number(minArg);
const PASV_MAX = Number(maxArg);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let nextPort = PASV_MIN;

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

function reply(conn: Deno.Conn, text: string): Promise<void> {
  return writeAll(conn, encoder.encode(text + "\r\n"));
}

/** A listener on the next free port of the passive range. */
function listenPassive(): Deno.TcpListener {
  for (let i = 0; i <= PASV_MAX - PASV_MIN; i++) {
    const port = nextPort;
    nextPort = nextPort >= PASV_MAX ? PASV_MIN : nextPort + 1;
    try {
      return Deno.listen({ hostname: "127.0.0.1", port });
    } catch { /* taken: the next */ }
  }
  throw new Error("no free passive port");
}

async function session(conn: Deno.Conn): Promise<void> {
  const chunk = new Uint8Array(4096);
  let buf: Uint8Array | null = null;
  let pending = "";
  let loggedIn = false;
  let listener: Deno.TcpListener | null = null;
  let cwd = "";
  await reply(conn, "220 floor");
  try {
    while (true) {
      const n = await conn.read(chunk);
      if (n === null) return;
      pending += decoder.decode(chunk.subarray(0, n));
      let lf: number;
      while ((lf = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, lf).replace(/\r$/, "");
        pending = pending.slice(lf + 1);
        const space = line.indexOf(" ");
        const verb = (space < 0 ? line : line.slice(0, space)).toUpperCase();
        const arg = space < 0 ? "" : line.slice(space + 1);
        const path = () => `${root}/${arg.startsWith("/") ? arg : cwd + arg}`;
        switch (verb) {
          case "USER":
            await reply(conn, arg === userName ? "331 password" : "530 no");
            break;
          case "PASS":
            loggedIn = arg === password;
            await reply(conn, loggedIn ? "230 ok" : "530 no");
            break;
          case "QUIT":
            await reply(conn, "221 bye");
            return;
          case "TYPE":
            await reply(conn, "200 ok");
            break;
          case "PWD":
            await reply(conn, `257 "/${cwd}"`);
            break;
          case "CWD": {
            const dir = arg.replace(/^\/+/, "").replace(/\/*$/, "");
            cwd = dir ? `${dir}/` : "";
            await reply(conn, "250 ok");
            break;
          }
          case "SIZE":
            try {
              await reply(conn, `213 ${Deno.statSync(path()).size}`);
            } catch {
              await reply(conn, "550 no");
            }
            break;
          case "PASV":
          case "EPSV": {
            if (!loggedIn) {
              await reply(conn, "530 log in");
              break;
            }
            listener ??= listenPassive();
            const port = (listener.addr as Deno.NetAddr).port;
            await reply(
              conn,
              verb === "EPSV"
                ? `229 Entering Extended Passive Mode (|||${port}|)`
                : `227 Entering Passive Mode (127,0,0,1,${port >> 8},${port & 255})`,
            );
            break;
          }
          case "RETR":
          case "STOR": {
            if (!listener) {
              await reply(conn, "425 use PASV first");
              break;
            }
            let file: Deno.FsFile;
            try {
              file = verb === "RETR"
                ? Deno.openSync(path(), { read: true })
                : Deno.openSync(path(), { write: true, create: true, truncate: true });
            } catch {
              await reply(conn, "550 no");
              break;
            }
            const data = await listener.accept();
            data.setNoDelay(true);
            await reply(conn, "150 ok");
            buf ??= new Uint8Array(1 << 20);
            try {
              if (verb === "RETR") {
                let got: number | null;
                while ((got = file.readSync(buf)) !== null) {
                  await writeAll(data, buf.subarray(0, got));
                }
              } else {
                let got: number | null;
                while ((got = await data.read(buf)) !== null) {
                  let off = 0;
                  while (off < got) off += file.writeSync(buf.subarray(off, got));
                }
                file.syncDataSync();
              }
            } finally {
              file.close();
              data.close();
            }
            await reply(conn, "226 done");
            break;
          }
          default:
            await reply(conn, "502 not here");
        }
      }
    }
  } finally {
    listener?.close();
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

// A clean exit on SIGTERM (as the harness stops servers), so `--cpu-prof` can write its profile.
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
const control = Deno.listen({ hostname: "127.0.0.1", port: Number(portArg) });
for await (const conn of control) {
  conn.setNoDelay(true);
  session(conn).catch(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  });
}
