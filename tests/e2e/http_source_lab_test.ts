/**
 * `public_address: { from: http }` in the NAT lab: pitifulnat, behind a
 * port-forwarding router with no FTP helper, learns its public address from
 * a "what is my IP" web service on the lab's internet (no DNS anywhere), a
 * client behind its own masquerading router transfers through it, and when
 * the router's WAN address changes and the service's answer follows, the
 * running server announces the new address.
 *
 * Needs root, iproute2, nftables, curl and python3 (and what labGate asks
 * for); skipped with a message otherwise, except under CI=true where that
 * is a failure.
 */
import assert from "node:assert/strict";
import { hashPassword } from "../../src/auth/password.ts";
import { type RunResult, sha256File, writeRandomFile } from "../helpers/server.ts";
import {
  ADDR,
  cacheCli,
  cliArgs,
  FORWARD,
  fresh,
  FTPLIB_CLIENT,
  in227,
  labCurl,
  labGate,
  NatLab,
  type Proc,
  REPO,
  show,
  told,
} from "./lab.ts";

const USER = "alice";
const PASS = "lab-secret-2";

/** Where the address service listens, on the lab's internet. */
const SERVICE_PORT = 8080;
const SERVICE_URL = `http://${ADDR.inet}:${SERVICE_PORT}/`;

/**
 * The address service: answers GET / with the contents of a file (so the
 * test decides the answer) and prints each asker's address as it sees it.
 */
const ADDRESS_SERVICE = `
import http.server, sys
path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(path, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print("GET from", self.client_address[0], "answered", body.decode().strip(), flush=True)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer((host, port), Handler)
print("address service ready", flush=True)
server.serve_forever()
`;

const { missing, ignore } = await labGate(
  "HTTP source lab",
  "root, iproute2, nftables, curl and python3",
);

function serverConfig(home: string, hash: string): string {
  return [
    `listen: { address: 0.0.0.0, port: ${FORWARD.control} }`,
    `passive: { min_port: ${FORWARD.min}, max_port: ${FORWARD.max} }`,
    `public_address: { from: http, url: "${SERVICE_URL}", refresh_seconds: 5 }`,
    "users:",
    `  - name: ${USER}`,
    `    password: "${hash}"`,
    `    home: ${JSON.stringify(home)}`,
    "    permissions: [read, write, delete, mkdir, rename]",
    "limits: { login_failure_delay_ms: 0, data_timeout_seconds: 10 }",
    "log: { level: info }",
    "",
  ].join("\n");
}

/** "198.51.100.20" as a regular expression. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

Deno.test({
  name: "http source lab: the public address from a web service, followed when it changes",
  ignore,
  async fn(t) {
    if (missing.length > 0) {
      throw new Error(`NAT lab prerequisites missing under CI=true: ${missing.join(", ")}`);
    }
    // A namespace has no route to the package registry: fill the cache first.
    await cacheCli();

    const dir = await Deno.makeTempDir({ prefix: "pn-hs-" });
    const home = `${dir}/home`;
    const local = `${dir}/client`;
    await Deno.mkdir(home);
    await Deno.mkdir(local);
    await writeRandomFile(`${home}/dl.bin`, 2 * 1024 * 1024 + 3, 21);
    await writeRandomFile(`${local}/up.bin`, 1024 * 1024 + 9, 23);
    const dlSum = await sha256File(`${home}/dl.bin`);
    const upSum = await sha256File(`${local}/up.bin`);
    const serviceScript = `${dir}/address_service.py`;
    const ftplibScript = `${dir}/wait_pasv.py`;
    await Deno.writeTextFile(serviceScript, ADDRESS_SERVICE);
    await Deno.writeTextFile(ftplibScript, FTPLIB_CLIENT);
    const answerFile = `${dir}/answer.txt`;
    /** Sets the service's answer; the rename makes it atomic for a reader. */
    const answer = async (text: string) => {
      await Deno.writeTextFile(`${answerFile}.new`, text);
      await Deno.rename(`${answerFile}.new`, answerFile);
    };
    await answer(`${ADDR.srvRouterWan}\n`);
    const config = `${dir}/config.yaml`;
    await Deno.writeTextFile(config, serverConfig(home, await hashPassword(PASS)));

    let lab: NatLab | null = null;
    try {
      lab = await NatLab.create({ tag: "hs" });
      const theLab = lab;
      const rules = await lab.rulesets();
      assert.doesNotMatch(rules, /helper/, "the lab must not use an FTP helper");

      const service = lab.spawn("inet", "python3", [
        serviceScript,
        answerFile,
        ADDR.inet,
        `${SERVICE_PORT}`,
      ]);
      await service.waitFor(/address service ready/, 10_000);

      const srv: Proc = lab.spawn("srv", Deno.execPath(), cliArgs("serve", "--config", config), {
        cwd: REPO,
      });
      await srv.waitFor(/listening on ftp:\/\//, 15_000);
      await srv.waitFor(
        new RegExp(`resolved ${literal(SERVICE_URL)} -> 198\\.51\\.100\\.20 via HTTP`),
        15_000,
      );
      // The service saw the server through its router's masquerade.
      await service.waitFor(/GET from 198\.51\.100\.20 answered 198\.51\.100\.20/, 5_000);

      const url = (host: string, path = "") =>
        `ftp://${USER}:${PASS}@${host}:${FORWARD.control}/${path}`;
      /** Downloads dl.bin and uploads up.bin with curl PASV to `host`, checking both by SHA-256. */
      const checkTransfers = async (name: string, host: string) => {
        const to = await fresh(`${local}/${name}.bin`);
        const g: RunResult = await labCurl(theLab, "cli", "pasv", ["-o", to, url(host, "dl.bin")]);
        assert.equal(g.code, 0, show(g));
        assert.match(g.stderr, told(host), show(g));
        assert.equal(await sha256File(to), dlSum, `${name}: downloaded bytes differ`);
        const as = `up-${name}.bin`;
        await fresh(`${home}/${as}`);
        const p = await labCurl(theLab, "cli", "pasv", ["-T", `${local}/up.bin`, url(host, as)]);
        assert.equal(p.code, 0, show(p));
        assert.match(p.stderr, told(host), show(p));
        assert.equal(await sha256File(`${home}/${as}`), upSum, `${name}: uploaded bytes differ`);
      };

      const wan = ADDR.srvRouterWan;
      await t.step("curl PASV through NAT is told the address the service answered", async () => {
        await checkTransfers("curl-pasv", wan);
      });

      const newWan = ADDR.srvRouterWanNew;
      await t.step(
        "the WAN address changes: the running server announces the new one",
        async () => {
          await theLab.renumberServerWan(wan, newWan);
          await answer(`${newWan}\n`);
          const changed = Date.now();
          // One session, polling PASV: the same process must pick up the change, by its
          // 5 s refresh or early, as the polled passive ports are never connected to.
          const r = await theLab.exec("cli", "python3", [
            ftplibScript,
            "wait-pasv",
            newWan,
            `${FORWARD.control}`,
            USER,
            PASS,
            in227(newWan),
            "20",
          ], 30_000);
          assert.equal(
            r.code,
            0,
            `no 227 with ${newWan} within 20 s:\n${show(r)}\n--- server\n${srv.output}`,
          );
          assert.ok(Date.now() - changed < 25_000);
          assert.equal(srv.exited, null, "the server must not have restarted");
          await srv.waitFor(/public address changed: 198\.51\.100\.20 -> 198\.51\.100\.21/, 5_000);
          // Each lookup connects afresh: the service sees the router's new address.
          assert.match(
            service.output,
            /GET from 198\.51\.100\.21 answered 198\.51\.100\.21/,
            service.output,
          );
          await checkTransfers("curl-pasv-new", newWan);
        },
      );
    } finally {
      // Stops the service and the server by PID, then deletes the namespaces.
      await lab?.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
