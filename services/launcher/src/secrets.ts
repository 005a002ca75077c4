/**
 * `.data/secrets.json` (mode 0600): the password of each service's database role,
 * generated once and reused, so restarts keep working against the same server.
 */
import { randomBytes } from "node:crypto";
import { chmod, readFile, rename, writeFile } from "node:fs/promises";

export async function loadSecrets(
  path: string,
  names: readonly string[],
): Promise<Record<string, string>> {
  let secrets: Record<string, string> = {};
  try {
    secrets = JSON.parse(await readFile(path, "utf8")) as Record<string, string>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      throw new Error(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  const missing = names.filter((name) => typeof secrets[name] !== "string");
  for (const name of missing) secrets[name] = randomBytes(18).toString("hex");
  if (missing.length > 0) {
    await writeFile(`${path}.tmp`, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
    await rename(`${path}.tmp`, path);
  }
  // Also tightens a file someone created or copied with looser permissions.
  await chmod(path, 0o600);
  return secrets;
}
