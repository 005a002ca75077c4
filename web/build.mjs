/**
 * Builds the storefront (web/ -> web/dist) with Vite's JS API. `npm start` runs it
 * first (the `prestart` script) with `--if-stale`: it builds only when web/dist is
 * missing or older than anything it is made from (web/src, index.html, the Vite
 * config, the generated code in gen/ts), so a fresh clone serves the storefront after
 * `npm ci && npm start` and a second start costs a few stat calls.
 *
 *   node web/build.mjs             build now
 *   node web/build.mjs --if-stale  build only when needed
 */
import { existsSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const webDir = fileURLToPath(new URL(".", import.meta.url));
const repoRoot = join(webDir, "..");
const dist = join(webDir, "dist");
const stamp = join(dist, "index.html");
const inputs = [
  join(webDir, "src"),
  join(webDir, "index.html"),
  join(webDir, "vite.config.ts"),
  join(repoRoot, "gen", "ts"),
  join(repoRoot, "package-lock.json"),
];

/** Newest modification time under a file or folder, in ms. */
function newest(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs;
  for (const entry of readdirSync(path)) max = Math.max(max, newest(join(path, entry)));
  return max;
}

function stale() {
  if (!existsSync(stamp)) return "web/dist is missing";
  const built = statSync(stamp).mtimeMs;
  const changed = inputs.find((p) => newest(p) > built);
  return changed === undefined ? undefined : `${changed.slice(repoRoot.length)} changed`;
}

const reason = process.argv.includes("--if-stale") ? stale() : "asked to";
if (reason !== undefined) {
  const started = performance.now();
  const { build } = await import("vite");
  // Built beside, then swapped in: two `npm start`s at once (parallel e2e tests) never
  // see a half-written web/dist; the later swap simply wins.
  const tmp = join(webDir, `.dist-${process.pid}`);
  try {
    await build({
      configFile: join(webDir, "vite.config.ts"),
      logLevel: "warn",
      build: { outDir: tmp, emptyOutDir: true },
    });
    rmSync(dist, { recursive: true, force: true });
    try {
      renameSync(tmp, dist);
    } catch (err) {
      if (!existsSync(stamp)) throw err; // else another build got there first
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const ms = Math.round(performance.now() - started);
  process.stdout.write(`storefront built into web/dist in ${ms} ms (${reason})\n`);
}
