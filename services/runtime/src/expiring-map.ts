/**
 * `ExpiringMap`: a Map whose entries each expire at their own time, bounded — at `max`
 * entries the oldest one set is dropped. For facts a service may remember for a while
 * instead of asking again on every call: a verified token until it expires (auth.ts),
 * identity's word that a user exists (orders). An expired entry reads as missing.
 */
export class ExpiringMap<K, V> {
  readonly #entries = new Map<K, { value: V; until: number }>();
  readonly #max: number;

  constructor(max: number) {
    if (!(max >= 1)) throw new RangeError(`ExpiringMap: max must be at least 1, got ${max}`);
    this.#max = max;
  }

  /** The value, if it was set and `now` is before its expiry (epoch ms). */
  get(key: K, now = Date.now()): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (now < entry.until) return entry.value;
    this.#entries.delete(key);
    return undefined;
  }

  /** Remembers `value` until `until` (epoch ms). A key set again counts as the newest. */
  set(key: K, value: V, until: number): void {
    this.#entries.delete(key);
    if (this.#entries.size >= this.#max) {
      this.#entries.delete(this.#entries.keys().next().value as K);
    }
    this.#entries.set(key, { value, until });
  }

  delete(key: K): void {
    this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  /** Entries held, expired ones not yet read included. */
  get size(): number {
    return this.#entries.size;
  }
}
