/**
 * drizzle-kit config of the notifications service: schema in src/db/schema.ts, SQL
 * migrations (committed) in src/db/migrations. Paths are resolved from this file so
 * that `npx drizzle-kit generate --config services/notifications/drizzle.config.ts`
 * (repo root) and `npm run db:generate -w @shopmesh/notifications` both work.
 */
import { dirname, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "drizzle-kit";

const here = dirname(fileURLToPath(import.meta.url));
const fromCwd = (p: string) => relative(process.cwd(), resolve(here, p)) || ".";

export default defineConfig({
  dialect: "postgresql",
  schema: fromCwd("src/db/schema.ts"),
  out: fromCwd("src/db/migrations"),
});
