/**
 * Tests run against a real PostgreSQL: the server named by PG_URL / DATABASE_URL,
 * or, when neither is set, an embedded one started here (data under .data/test-pg).
 * NATS: NATS_URL, by default the local nats-server on 4222.
 */
import { startEmbeddedPostgres } from "../src/embedded-postgres.js";

export default async function setup() {
  // The machine's NATS with JetStream unless told otherwise.
  process.env["NATS_URL"] ||= "nats://127.0.0.1:4222";
  const given = process.env["PG_URL"] || process.env["DATABASE_URL"];
  if (given) {
    process.env["PG_URL"] = given;
    return;
  }
  const started = performance.now();
  const pg = await startEmbeddedPostgres({ dataDir: ".data/test-pg" });
  process.env["PG_URL"] = pg.url;
  process.stderr.write(
    `tests: embedded PostgreSQL on port ${pg.port} (${Math.round(performance.now() - started)} ms)\n`,
  );
  return async () => pg.stop();
}
