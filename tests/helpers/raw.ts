/**
 * A raw control-connection client for protocol-level tests: sends exact
 * bytes and reads whole replies (multi-line included) with a time limit.
 */

/** One reply: its code and all its lines. */
export interface Reply {
  code: number;
  lines: string[];
  text: string;
}

/** A raw FTP control connection. */
export class RawClient {
  #buf = "";
  #dec = new TextDecoder();
  private constructor(readonly conn: Deno.TcpConn) {}

  /** Connects and reads the greeting. */
  static async connect(host: string, port: number): Promise<[RawClient, Reply]> {
    const c = new RawClient(await Deno.connect({ hostname: host, port }));
    return [c, await c.read()];
  }

  /** Sends raw bytes. */
  async sendBytes(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }

  /** Sends a command line and reads its reply. */
  async cmd(line: string, timeoutMs = 10_000): Promise<Reply> {
    await this.sendBytes(new TextEncoder().encode(line + "\r\n"));
    return this.read(timeoutMs);
  }

  async #line(deadline: number): Promise<string | null> {
    while (true) {
      const i = this.#buf.indexOf("\r\n");
      if (i >= 0) {
        const line = this.#buf.slice(0, i);
        this.#buf = this.#buf.slice(i + 2);
        return line;
      }
      const chunk = new Uint8Array(65536);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timed out waiting for a reply; have ${JSON.stringify(this.#buf)}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.conn.read(chunk),
        new Promise<"t">((r) => timer = setTimeout(() => r("t"), left)),
      ]).finally(() => clearTimeout(timer));
      if (n === "t") {
        throw new Error(`timed out waiting for a reply; have ${JSON.stringify(this.#buf)}`);
      }
      if (n === null) return null;
      this.#buf += this.#dec.decode(chunk.subarray(0, n), { stream: true });
    }
  }

  /** Reads one complete reply; throws on timeout or EOF. */
  async read(timeoutMs = 10_000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    const first = await this.#line(deadline);
    if (first === null) throw new Error("connection closed");
    const code = Number(first.slice(0, 3));
    const lines = [first];
    if (first[3] === "-") {
      while (true) {
        const l = await this.#line(deadline);
        if (l === null) throw new Error("connection closed inside a multi-line reply");
        lines.push(l);
        if (l.startsWith(`${code} `)) break;
      }
    }
    return { code, lines, text: lines.join("\n") };
  }

  /** True when the server has closed the connection (reads EOF within the time). */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    try {
      while (true) {
        const l = await this.#line(Date.now() + timeoutMs);
        if (l === null) return true;
      }
    } catch (e) {
      return !/timed out/.test((e as Error).message);
    }
  }

  /** Logs in. */
  async login(user: string, pass: string): Promise<void> {
    await this.cmd(`USER ${user}`);
    const r = await this.cmd(`PASS ${pass}`);
    if (r.code !== 230) throw new Error(`login failed: ${r.text}`);
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}
