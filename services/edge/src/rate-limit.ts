/**
 * Per-client token buckets (one per user id, or per IP for anonymous callers).
 * Each edge replica keeps its own buckets; the cluster-wide limit is the gateway's.
 */
export interface RateLimiter {
  /** 0 when admitted, else the seconds to wait before a token is available. */
  take(key: string): number;
}

export function createRateLimiter(ratePerSecond: number, burst: number): RateLimiter {
  if (ratePerSecond <= 0) return { take: () => 0 };
  const buckets = new Map<string, { tokens: number; at: number }>();
  // Forget idle clients so the map cannot grow without bound.
  const sweep = setInterval(() => {
    const cutoff = performance.now() - (burst / ratePerSecond) * 1000 * 2;
    for (const [key, b] of buckets) if (b.at < cutoff) buckets.delete(key);
  }, 30_000);
  sweep.unref();
  return {
    take(key) {
      const now = performance.now();
      const b = buckets.get(key) ?? { tokens: burst, at: now };
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * ratePerSecond);
      b.at = now;
      buckets.set(key, b);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return 0;
      }
      return Math.max(1, Math.ceil((1 - b.tokens) / ratePerSecond));
    },
  };
}
