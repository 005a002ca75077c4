import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../src/errors.js";
import { createdAtCursor, isUuid, pageTokenCodec, readTimestamp } from "../src/page-token.js";

const ID = "0b6f4a52-3d9c-4f0e-9a51-2f8e4c7d1a90";

function violation(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toBe("invalid page_token");
    const [first] = (err as InvalidArgumentError).violations;
    if (first === undefined) throw new Error("no field violation");
    return first;
  }
  throw new Error("expected an invalid page_token");
}

describe("pageTokenCodec", () => {
  const scoped = pageTokenCodec<{ name: string; id: string }, { query: string }>({
    write: (c) => ({ n: c.name, i: c.id }),
    read: ({ n, i }) => (typeof n === "string" && isUuid(i) ? { name: n, id: i } : undefined),
    scope: (s) => [s.query],
    mismatch: "issued for a different query",
  });

  it("round-trips a cursor as base64url JSON, bound to its scope", () => {
    const token = scoped.encode({ name: "mug", id: ID }, { query: "m" });
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    const body = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    expect(Object.keys(body)).toEqual(["v", "n", "i", "s"]);
    expect(scoped.decode(token, { query: "m" })).toEqual({ name: "mug", id: ID });
    expect(violation(() => scoped.decode(token, { query: "x" }))).toMatchObject({
      field: "page_token",
      rule: "issued for a different query",
    });
  });

  it("refuses anything it did not issue", () => {
    const forged = (body: unknown) =>
      Buffer.from(JSON.stringify(body), "utf8").toString("base64url");
    expect(violation(() => scoped.decode("garbage!", { query: "" })).rule).toBe("not base64url");
    for (const token of ["bm90IGpzb24", forged(null), forged({ v: 2, n: "a", i: ID })]) {
      expect(violation(() => scoped.decode(token, { query: "" })).rule).toBe("malformed");
    }
    expect(
      violation(() => scoped.decode(forged({ v: 1, n: "a", i: "nope" }), { query: "" })).rule,
    ).toBe("malformed");
  });

  it("a (created_at, id) cursor without scope", () => {
    const codec = pageTokenCodec(createdAtCursor);
    const cursor = { createdAt: new Date("2026-01-02T03:04:05.678Z"), id: ID };
    const token = codec.encode(cursor);
    expect(JSON.parse(Buffer.from(token, "base64url").toString("utf8"))).toEqual({
      v: 1,
      t: "2026-01-02T03:04:05.678Z",
      i: ID,
    });
    expect(codec.decode(token)).toEqual(cursor);
    const bad = Buffer.from(JSON.stringify({ v: 1, t: "2026-13-45", i: ID })).toString("base64url");
    expect(violation(() => codec.decode(bad)).rule).toBe("malformed");
  });

  it("field readers", () => {
    expect(isUuid(ID)).toBe(true);
    expect(isUuid(ID.toUpperCase())).toBe(false);
    expect(readTimestamp("2026-01-02T03:04:05.678Z")?.toISOString()).toBe(
      "2026-01-02T03:04:05.678Z",
    );
    expect(readTimestamp("soon")).toBeUndefined();
    expect(readTimestamp(5)).toBeUndefined();
  });
});
