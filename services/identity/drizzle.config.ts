/**
 * drizzle-kit config: `npm run db:generate -w @shopmesh/identity` writes a new SQL
 * migration into src/db/migrations from the schema (paths relative to this folder).
 */
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/schema.ts",
  out: "./src/db/migrations",
});
