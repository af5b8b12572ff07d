/**
 * `pitifulnat hash-password`: read a password and print its hash.
 * @module
 */
import { hashPassword } from "../auth/password.ts";

/** Reads one line from a terminal in raw mode, without echo, after printing `prompt` on stderr. */
async function readSecret(prompt: string): Promise<string> {
  const enc = new TextEncoder();
  await Deno.stderr.write(enc.encode(prompt));
  Deno.stdin.setRaw(true);
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  try {
    while (true) {
      const n = await Deno.stdin.read(buf);
      if (n === null || buf[0] === 13 || buf[0] === 10) break;
      if (buf[0] === 3) throw new Error("cancelled");
      if (buf[0] === 127 || buf[0] === 8) bytes.pop();
      else bytes.push(buf[0]);
    }
  } finally {
    Deno.stdin.setRaw(false);
    await Deno.stderr.write(enc.encode("\n"));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The first line of stdin (without its line ending). */
async function readLine(): Promise<string> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of Deno.stdin.readable) {
    chunks.push(chunk);
    if (chunk.includes(10)) break;
  }
  const text = new TextDecoder().decode(
    chunks.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array()),
  );
  return text.split(/\r?\n/)[0];
}

/**
 * Reads a new password: on a terminal prompted for twice without echo
 * (`prompt`, then "Again: "), else the first line of stdin.
 *
 * @throws {Error} when the two differ, it is empty, or input is cancelled (Ctrl-C).
 */
export async function readNewPassword(prompt = "Password: "): Promise<string> {
  let password: string;
  if (Deno.stdin.isTerminal()) {
    password = await readSecret(prompt);
    const again = await readSecret("Again: ");
    if (again !== password) throw new Error("the two passwords differ");
  } else {
    password = await readLine();
  }
  if (password === "") throw new Error("empty password");
  return password;
}

/** Runs the command; returns the exit code. */
export async function runHashPassword(options: { cost?: string } = {}): Promise<number> {
  const cost = options.cost === undefined ? undefined : Number(options.cost);
  // Decimal digits only: Number() alone would take "0x0c", "1e1" and " 12".
  const digits = options.cost === undefined || /^\d+$/.test(options.cost);
  if (cost !== undefined && !(digits && Number.isInteger(cost) && cost >= 10 && cost <= 20)) {
    console.error(
      `pitifulnat hash-password: --cost must be an integer from 10 to 20, not ${options.cost}`,
    );
    return 2;
  }
  let password: string;
  try {
    password = await readNewPassword();
  } catch (e) {
    console.error(`pitifulnat hash-password: ${(e as Error).message}`);
    return 1;
  }
  console.log(await hashPassword(password, { cost }));
  return 0;
}
