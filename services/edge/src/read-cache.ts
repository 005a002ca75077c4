/**
 * A micro-cache of public reads at the edge: the encoded JSON answer of an anonymous
 * REST GET of a method that has no side effects and needs no token (GetProduct,
 * ListProducts), kept for `ttlMs` (EDGE_CACHE_TTL_MS, default 1 s; 0 turns it off).
 *
 * What it buys: a hot product page is answered by the edge alone, without the gRPC hop,
 * the catalog's query and the JSON encoding, and a burst on one product reaches the
 * catalog once per TTL (concurrent misses share one call). What it costs: an anonymous
 * reader may see a product (its stock) up to `ttlMs` old. Stock is decided at
 * ReserveStock, never from this copy; a signed-in caller, or one sending
 * `Cache-Control: no-cache`, always reads through.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel as Idempotency } from "@bufbuild/protobuf/wkt";
import { isAnonymous } from "./gateway.js";

interface Entry {
  body: string;
  expires: number;
}

export interface ReadCache {
  /** Whether an answer to this request may come from (and go into) the cache. */
  cacheable(
    method: DescMethod,
    verb: string,
    headers: { authorization?: string; cacheControl?: string },
  ): boolean;
  /**
   * The cached answer for `key`, or `load()`'s, stored for the TTL. Concurrent calls for
   * the same missing key share one load.
   */
  get(key: string, load: () => Promise<string>): Promise<{ body: string; hit: boolean }>;
}

export function createReadCache(ttlMs: number, maxEntries = 10_000): ReadCache {
  const entries = new Map<string, Entry>();
  const loading = new Map<string, Promise<string>>();
  return {
    cacheable(method, verb, headers) {
      return (
        ttlMs > 0 &&
        verb === "GET" &&
        headers.authorization === undefined &&
        !/no-cache|no-store/i.test(headers.cacheControl ?? "") &&
        method.idempotency === Idempotency.NO_SIDE_EFFECTS &&
        isAnonymous(method)
      );
    },
    async get(key, load) {
      const now = Date.now();
      const entry = entries.get(key);
      if (entry !== undefined && entry.expires > now) return { body: entry.body, hit: true };
      let pending = loading.get(key);
      if (pending === undefined) {
        pending = load().finally(() => loading.delete(key));
        loading.set(key, pending);
        const body = await pending;
        if (entries.size >= maxEntries) {
          // Expired entries go first; if none, the oldest.
          for (const [k, e] of entries) if (e.expires <= now) entries.delete(k);
          if (entries.size >= maxEntries) entries.delete(entries.keys().next().value as string);
        }
        entries.delete(key); // re-inserted last: Map order is the eviction order
        entries.set(key, { body, expires: Date.now() + ttlMs });
        return { body, hit: false };
      }
      return { body: await pending, hit: false };
    },
  };
}
