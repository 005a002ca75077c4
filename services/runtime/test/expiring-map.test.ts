import { describe, expect, it } from "vitest";
import { ExpiringMap } from "../src/expiring-map.js";

describe("ExpiringMap", () => {
  it("answers an entry until its own expiry, then forgets it", () => {
    const m = new ExpiringMap<string, number>(10);
    m.set("a", 1, 1_000);
    m.set("b", 2, 2_000);
    expect(m.get("a", 999)).toBe(1);
    expect(m.get("b", 999)).toBe(2);
    expect(m.get("a", 1_000)).toBeUndefined();
    expect(m.size).toBe(1); // read as expired: dropped
    expect(m.get("b", 1_500)).toBe(2);
    expect(m.get("missing", 0)).toBeUndefined();
  });

  it("holds at most max entries, dropping the oldest set", () => {
    const m = new ExpiringMap<string, number>(2);
    m.set("a", 1, 10_000);
    m.set("b", 2, 10_000);
    m.set("a", 3, 10_000); // set again: now the newest
    m.set("c", 4, 10_000);
    expect(m.size).toBe(2);
    expect(m.get("b", 0)).toBeUndefined();
    expect(m.get("a", 0)).toBe(3);
    expect(m.get("c", 0)).toBe(4);
    m.delete("a");
    expect(m.get("a", 0)).toBeUndefined();
    m.clear();
    expect(m.size).toBe(0);
  });

  it("refuses a bound below one", () => {
    expect(() => new ExpiringMap(0)).toThrow(/max must be at least 1/);
  });
});
