// Runs ftp-srv (npm) in the foreground for the benchmark.
// Usage: node ftp_srv_runner.mjs INSTALL_DIR PORT PASV_MIN PASV_MAX ROOT USER PASSWORD
// INSTALL_DIR holds node_modules/ftp-srv (installed there by ftp_srv.ts).
import { createRequire } from "node:module";
import { join } from "node:path";

const [dir, port, pasvMin, pasvMax, root, user, password] = process.argv.slice(2);
const require = createRequire(join(dir, "runner.cjs"));
const FtpSrv = require("ftp-srv");
const bunyan = require("bunyan");

const server = new FtpSrv({
  url: `ftp://127.0.0.1:${port}`,
  pasv_url: "127.0.0.1",
  pasv_min: Number(pasvMin),
  pasv_max: Number(pasvMax),
  greeting: "ftp-srv ready",
  anonymous: false,
  // info logs logins and transfers, as the other servers do.
  log: bunyan.createLogger({ name: "ftp-srv", level: "info", stream: process.stderr }),
});
server.on("login", ({ username, password: given }, resolve, reject) => {
  if (username === user && given === password) resolve({ root });
  else reject(new Error("Login incorrect"));
});
let closing = false;
function stop() {
  if (closing) return;
  closing = true;
  Promise.resolve(server.close()).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
await server.listen();
