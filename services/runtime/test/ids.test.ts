import { describe, expect, it } from "vitest";
import { uuidv7 } from "../src/ids.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The 48-bit millisecond timestamp at the front of a version 7 id. */
const msOf = (id: string) => Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16);

describe("uuidv7", () => {
  it("is a version 7, variant 10 UUID that starts with its millisecond", () => {
    const at = Date.parse("2026-12-04T19:00:00.123Z");
    const id = uuidv7(at);
    expect(id).toMatch(UUID);
    expect(msOf(id)).toBe(at);
    // Around the edges of the 48 bits: 2 ** 32 (where a 32-bit shift would wrap) and the top.
    for (const ms of [0, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 255, 2 ** 48 - 1]) {
      expect(msOf(uuidv7(ms))).toBe(ms);
      expect(uuidv7(ms)).toMatch(UUID);
    }
    const before = Date.now();
    expect(msOf(uuidv7())).toBeGreaterThanOrEqual(before);
    expect(msOf(uuidv7())).toBeLessThanOrEqual(Date.now());
  });

  it("sorts by time across milliseconds, and never repeats", () => {
    const ids: string[] = [];
    const t0 = Date.parse("2026-12-04T19:00:00.000Z");
    // 5,000 ids: the random pool (256 ids) refills many times over.
    for (let i = 0; i < 5_000; i++) ids.push(uuidv7(t0 + Math.floor(i / 100)));
    expect(new Set(ids).size).toBe(ids.length);
    const byTime = ids.map(msOf);
    expect(byTime).toEqual([...byTime].sort((a, b) => a - b));
    // Text order agrees with time order across milliseconds (what a B-tree sees).
    expect(uuidv7(t0) < uuidv7(t0 + 1)).toBe(true);
    expect(uuidv7(t0 + 255) < uuidv7(t0 + 256)).toBe(true);
    // The random part is random: two ids of one millisecond differ after the version.
    const [a, b] = [uuidv7(t0), uuidv7(t0)];
    expect(a.slice(0, 13)).toBe(b.slice(0, 13));
    expect(a.slice(15)).not.toBe(b.slice(15));
  });
});
