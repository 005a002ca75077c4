/**
 * Time-ordered ids (UUID version 7, RFC 9562): 48 bits of Unix milliseconds, then 74
 * random bits. For ids that become keys of tables written at every event — the outbox's
 * `id` and every consumer's inbox key are event ids — so that a new key lands at the
 * right edge of its B-tree (PostgreSQL's fast path for rising keys: no descent, one hot
 * page) instead of on a random leaf, which costs a page read and, after each checkpoint, a
 * whole page in the WAL. Two ids collide only if made in the same millisecond with the
 * same 74 random bits. They reveal their creation time to the millisecond, which an event
 * carries anyway (`occur_time`). ADR 0011.
 */
import { randomFillSync } from "node:crypto";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
/** Random bytes fetched 256 ids at a time: one call into OpenSSL per 256 ids. */
const POOL = Buffer.alloc(16 * 256);
let poolOffset = POOL.length;

/** A new UUID version 7 in its canonical text form. */
export function uuidv7(now: number = Date.now()): string {
  if (poolOffset === POOL.length) {
    randomFillSync(POOL);
    poolOffset = 0;
  }
  const b = POOL.subarray(poolOffset, poolOffset + 16);
  poolOffset += 16;
  // 48-bit big-endian milliseconds (2 ** 32 does not fit in a 32-bit shift).
  const high = Math.floor(now / 2 ** 16);
  b[0] = (high >>> 24) & 0xff;
  b[1] = (high >>> 16) & 0xff;
  b[2] = (high >>> 8) & 0xff;
  b[3] = high & 0xff;
  b[4] = (now >>> 8) & 0xff;
  b[5] = now & 0xff;
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x70; // version 7
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80; // variant 10
  let s = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) s += "-";
    s += HEX[b[i] ?? 0];
  }
  return s;
}
