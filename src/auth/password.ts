/**
 * Password hashes: salted scrypt from node:crypto, stored as
 * `scrypt$N$r$p$salt$hash` (salt and hash in base64). Hashing runs on the
 * thread pool, so a login never blocks other sessions.
 * @module
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";

/**
 * scrypt cost used for new hashes: N=2^12, r=8, p=1. A check takes 4 MiB
 * and about 8 ms on a 2 GHz x86 core: six times the CPU time of
 * SHA-512-crypt's default 5,000 rounds (1.3 ms on the same core), and
 * memory-hard, which SHA-512-crypt is not. `--cost 14` gives 16 MiB and
 * four times the time.
 */
export const SCRYPT_PARAMS = { N: 4096, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;

function derive(
  password: string,
  salt: Uint8Array,
  params: { N: number; r: number; p: number },
): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    scrypt(
      password.normalize("NFC"),
      salt,
      KEY_LENGTH,
      { ...params, maxmem: 256 * params.N * params.r + 1024 * 1024 },
      (err, key) => err ? reject(err) : resolve(new Uint8Array(key)),
    );
  });
}

/**
 * Hashes a password for the config file. `cost` is log2 of scrypt's N
 * (default 12: N=4096, 4 MiB and about 8 ms per check); each step up
 * doubles both.
 */
export async function hashPassword(
  password: string,
  options: { cost?: number } = {},
): Promise<string> {
  const cost = options.cost ?? Math.log2(SCRYPT_PARAMS.N);
  if (!Number.isInteger(cost) || cost < 10 || cost > 20) {
    throw new RangeError(`cost must be an integer from 10 to 20, got ${cost}`);
  }
  const params = { ...SCRYPT_PARAMS, N: 2 ** cost };
  const salt = new Uint8Array(randomBytes(16));
  const key = await derive(password, salt, params);
  const { N, r, p } = params;
  return `scrypt$${N}$${r}$${p}$${b64(salt)}$${b64(key)}`;
}

/** Parsed form of a stored hash; null when the text is not one. */
export function parseHash(
  text: string,
): { N: number; r: number; p: number; salt: Uint8Array; key: Uint8Array } | null {
  const parts = text.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return null;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  if (![N, r, p].every((x) => Number.isInteger(x) && x > 0)) return null;
  if (N < 2 || (N & (N - 1)) !== 0 || N > 1 << 20 || r > 32 || p > 16) return null;
  try {
    const salt = unb64(parts[4]);
    const key = unb64(parts[5]);
    if (salt.length < 8 || key.length < 16) return null;
    return { N, r, p, salt, key };
  } catch {
    return null;
  }
}

/** Checks a password against a stored hash in constant time. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parseHash(stored);
  if (!parsed) return false;
  const key = await derive(password, parsed.salt, parsed);
  return key.length === parsed.key.length && timingSafeEqual(key, parsed.key);
}

function b64(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");
}

function unb64(text: string): Uint8Array {
  const bin = atob(text);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
