/** The edge's configuration, read once from the environment. */
import { adminEnv, authEnv, env, loadConfigOrExit } from "@shopmesh/runtime";

export const edgeEnv = {
  ...authEnv,
  PORT: env.port({ default: 8080 }),
  /** Admin HTTP port: /metrics, /healthz, /readyz (unset: none). */
  ...adminEnv,
  /** "1": share PORT with other edge replicas (SO_REUSEPORT; the launcher sets it). */
  REUSE_PORT: env.oneOf(["0", "1"] as const, { default: "0" }),
  CATALOG_ADDR: env.string({ default: "127.0.0.1:50052" }),
  ORDERS_ADDR: env.string({ default: "127.0.0.1:50053" }),
  PAYMENTS_ADDR: env.string({ default: "127.0.0.1:50054" }),
  NOTIFICATIONS_ADDR: env.string({ default: "127.0.0.1:50055" }),
  /** Comma-separated allowed origins, or "*" (tokens travel in a header, never cookies). */
  CORS_ORIGINS: env.string({ default: "*" }),
  /** Largest request body accepted; above it: 413. */
  BODY_LIMIT_BYTES: env.int({ default: 1024 * 1024, min: 1024 }),
  /** Sustained requests per second per client (user id, else IP); 0 turns the limit off. */
  RATE_LIMIT_RPS: env.int({ default: 50, min: 0 }),
  /** Bucket size: the burst a client may send above the sustained rate. */
  RATE_LIMIT_BURST: env.int({ default: 100, min: 1 }),
  /**
   * How long an anonymous REST read of a public method (GetProduct, ListProducts) is
   * answered from the edge's micro-cache (read-cache.ts); 0 turns it off.
   */
  EDGE_CACHE_TTL_MS: env.int({ default: 1_000, min: 0 }),
  /** Deadline of a call that arrives without one (REST, or RPC without a timeout). */
  EDGE_TIMEOUT_MS: env.int({ default: 10_000, min: 100 }),
  /** The storefront's built assets; empty: web/dist of this checkout or image. */
  WEB_DIR: env.string({ default: "" }),
};

export type EdgeConfig = ReturnType<typeof loadEdgeConfig>;

export function loadEdgeConfig() {
  return loadConfigOrExit(edgeEnv, "edge");
}
