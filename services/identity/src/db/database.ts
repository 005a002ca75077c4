/**
 * `openIdentityDatabase`: identity's database with its schema, migrated on open, and
 * the `IdentityDb` type every module takes.
 */
import { fileURLToPath } from "node:url";
import { type Database, type Db, openDatabase } from "@shopmesh/runtime/db.js";
import type { Logger } from "@shopmesh/runtime/logger.js";
import * as schema from "./schema.js";

export type IdentityDb = Db<typeof schema>;

const migrationsFolder = fileURLToPath(new URL("./migrations", import.meta.url));

/** Opens the database at `url` and applies identity's migrations (under the runtime's lock). */
export function openIdentityDatabase(
  url: string,
  options: { logger?: Logger; max?: number } = {},
): Promise<Database<typeof schema>> {
  return openDatabase({ url, schema, migrationsFolder, ...options });
}
