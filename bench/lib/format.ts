/**
 * Runs the repository's formatter (Biome) over result files, so that a committed
 * bench/results/latest.json stays lint-clean. Not fatal when Biome is missing.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";

export function formatJson(files: string[]): void {
  const root = new URL("../../", import.meta.url).pathname;
  try {
    execFileSync(join(root, "node_modules/.bin/biome"), ["format", "--write", ...files], {
      cwd: root,
      stdio: "ignore",
    });
  } catch {
    // The results are written either way.
  }
}
