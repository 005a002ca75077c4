/**
 * `openNotificationsDatabase`: the service's database with its schema, migrations
 * applied (under the runtime's advisory lock). Shared by main.ts and the tests so
 * both run exactly the committed migrations.
 */
import { fileURLToPath } from "node:url";
import { type Database, type Db, openDatabase } from "@shopmesh/runtime/db.js";
import type { Logger } from "@shopmesh/runtime/logger.js";
import * as schema from "./schema.js";

export type NotificationsSchema = typeof schema;
export type NotificationsDb = Db<NotificationsSchema>;
export type NotificationsDatabase = Database<NotificationsSchema>;

export const MIGRATIONS_FOLDER = fileURLToPath(new URL("./migrations", import.meta.url));

export function openNotificationsDatabase(
  url: string,
  options: { max?: number; logger?: Logger } = {},
): Promise<NotificationsDatabase> {
  return openDatabase({ url, schema, migrationsFolder: MIGRATIONS_FOLDER, ...options });
}
