/**
 * The real launcher (src/main.ts) as a process: against the PostgreSQL and NATS given
 * in the environment, and with its own embedded PostgreSQL and nats-server. Each run
 * gets its own data directory, free ports and a database prefix, so it never touches
 * a developer's `npm start` on the same machine.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { dropServiceDatabase, openDatabase } from "@shopmesh/runtime/db.js";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { buildService } from "../../../scripts/build-service.mjs";
import { SERVICE_NAMES } from "../src/config.js";
import { findOnPath, NATS_NOT_FOUND } from "../src/nats.js";
import { canConnect, freePort } from "../src/net.js";
import { DOMAIN_SERVICES } from "../src/services.js";
import type { StackInfo } from "../src/stack-file.js";
import { isAlive, type Spawned, spawnNode, waitUntil } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const MAIN = join(ROOT, "services/launcher/src/main.ts");
const PG_URL = process.env["PG_URL"] as string;
const NATS_URL = process.env["TEST_NATS_URL"] ?? "nats://127.0.0.1:4222";
const natsUp = await canConnect(Number(new URL(NATS_URL).port || 4222), new URL(NATS_URL).hostname);
const natsServer = findOnPath("nats-server", process.env["PATH"] ?? "") !== undefined;
const existing = SERVICE_NAMES.filter((s) => existsSync(join(ROOT, "services", s, "src/main.ts")));

const dataDirs: string[] = [];
/** A fresh data directory, readable by the embedded PostgreSQL's own user when root. */
function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "launcher-data-"));
  chmodSync(dir, 0o755);
  dataDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});

/** Environment without any server of the caller's, and free service ports. */
async function baseEnv(extra: NodeJS.ProcessEnv): Promise<NodeJS.ProcessEnv> {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: "info", NO_COLOR: "1" };
  for (const name of ["PG_URL", "DATABASE_URL", "NATS_URL"]) delete env[name];
  for (const name of SERVICE_NAMES) env[`${name.toUpperCase()}_PORT`] = String(await freePort());
  return { ...env, ...extra };
}

const started: Spawned[] = [];
function startLauncher(env: NodeJS.ProcessEnv): Spawned {
  const launched = spawnNode(["--import", "tsx", MAIN], env, ROOT);
  started.push(launched);
  return launched;
}

const readStack = (dir: string) =>
  JSON.parse(readFileSync(join(dir, "stack.json"), "utf8")) as StackInfo;

afterEach(async () => {
  for (const launched of started.splice(0)) {
    if (launched.child.exitCode === null && launched.child.signalCode === null) {
      launched.child.kill("SIGTERM");
      await launched.exited;
    }
  }
});

describe("launcher with PG_URL and NATS_URL", () => {
  const prefix = `lt${randomBytes(3).toString("hex")}_`;
  afterAll(async () => {
    for (const service of DOMAIN_SERVICES) await dropServiceDatabase(PG_URL, `${prefix}${service}`);
  });

  it.skipIf(!natsUp)(
    "provisions a role and database per service, keeps their passwords, stops cleanly",
    async () => {
      const dir = dataDir();
      const env = await baseEnv({
        PG_URL,
        NATS_URL,
        DATA_DIR: dir,
        DB_PREFIX: prefix,
        SERVICES: "none",
      });
      const first = startLauncher(env);
      await first.waitFor(/^shopmesh ready: no services started .* in [\d.]+ m?s$/m, 30_000);

      const secretsFile = join(dir, "secrets.json");
      expect(statSync(secretsFile).mode & 0o777).toBe(0o600);
      const secrets = JSON.parse(readFileSync(secretsFile, "utf8")) as Record<string, string>;
      expect(Object.keys(secrets).sort()).toEqual(
        DOMAIN_SERVICES.map((s) => `${prefix}${s}`).sort(),
      );
      for (const service of DOMAIN_SERVICES) {
        const name = `${prefix}${service}`;
        const url = new URL(PG_URL);
        url.username = name;
        url.password = secrets[name] as string;
        url.pathname = `/${name}`;
        const db = await openDatabase({ url: url.toString(), schema: {}, max: 1 });
        const [row] = await db.sql`select current_user as "user", current_database() as "database"`;
        await db.close();
        expect(row).toEqual({ user: name, database: name });
      }

      const stack = readStack(dir);
      expect(stack.launcherPid).toBe(first.pid);
      expect(stack.services).toEqual([]);
      expect(stack.postgres).toMatchObject({ embedded: false });
      expect(stack.postgres?.url).not.toContain(new URL(PG_URL).password || "\0");
      expect(stack.nats).toEqual({ url: NATS_URL, spawned: false });

      // One launcher per data directory.
      const intruder = startLauncher(env);
      expect((await intruder.exited).code).toBe(1);
      expect(intruder.output()).toContain(`another launcher (pid ${first.pid}) runs on ${dir}`);
      expect(readStack(dir).launcherPid).toBe(first.pid);

      first.child.kill("SIGTERM");
      expect((await first.exited).code).toBe(0);
      expect(existsSync(join(dir, "stack.json"))).toBe(false);

      // A restart reuses the passwords (and they still work: the role was not re-keyed).
      const second = startLauncher(env);
      await second.waitFor(/^shopmesh ready/m, 30_000);
      expect(JSON.parse(readFileSync(secretsFile, "utf8"))).toEqual(secrets);
      second.child.kill("SIGINT");
      expect((await second.exited).code).toBe(0);
    },
    90_000,
  );

  it.skipIf(!natsUp || existing.length === 0)(
    `starts the services that exist (${existing.join(", ")}), and SIGTERM leaves none running`,
    async () => {
      const dir = dataDir();
      const env = await baseEnv({ PG_URL, NATS_URL, DATA_DIR: dir, DB_PREFIX: prefix });
      const launched = startLauncher(env);
      const [line] = await launched.waitFor(/^shopmesh ready: .*$/m, 120_000);
      for (const name of existing.filter((s) => s !== "edge")) {
        expect(line).toContain(`${name} :${env[`${name.toUpperCase()}_PORT`]}`);
      }
      const stack = readStack(dir);
      expect(stack.services.map((s) => s.service)).toEqual(existing);
      for (const s of stack.services) {
        expect(s.replica).toBe(0);
        expect(s.port).toBe(Number(env[`${s.service.toUpperCase()}_PORT`]));
        expect(await canConnect(s.port as number)).toBe(true);
      }

      // A dead service comes back, and stack.json follows.
      const victim = stack.services[0] as StackInfo["services"][number];
      process.kill(victim.pid, "SIGKILL");
      await launched.waitFor(
        new RegExp(
          `${victim.service} exited \\(signal SIGKILL\\) after .*; restarting in 250 ms \\(restart #1\\)`,
        ),
        10_000,
      );
      const replaced = () => readStack(dir).services.find((s) => s.service === victim.service);
      await waitUntil(() => (replaced()?.pid ?? victim.pid) !== victim.pid, 10_000, "new pid");
      const successor = replaced()?.pid as number;
      await waitUntil(() => isAlive(successor), 1_000, "successor alive");

      launched.child.kill("SIGTERM");
      expect((await launched.exited).code).toBe(0);
      for (const pid of [...stack.services.map((s) => s.pid), successor]) {
        expect(isAlive(pid)).toBe(false);
      }
    },
    180_000,
  );
});

describe("launcher with SERVICE_CODE=bundle (what the image runs)", () => {
  const prefix = `lb${randomBytes(3).toString("hex")}_`;
  const catalogDist = join(ROOT, "services", "catalog", "dist");
  const hadBundle = existsSync(catalogDist);
  afterAll(async () => {
    if (!hadBundle) rmSync(catalogDist, { recursive: true, force: true });
    for (const service of DOMAIN_SERVICES) await dropServiceDatabase(PG_URL, `${prefix}${service}`);
  });

  // A service never built in this checkout (none in a fresh clone is).
  const unbuilt = existing.find(
    (s) => s !== "catalog" && !existsSync(join(ROOT, "services", s, "dist")),
  );
  it.skipIf(unbuilt === undefined)(
    "names the bundle that is missing and the command that builds it, before starting anything",
    async () => {
      const dir = dataDir();
      const launched = startLauncher(
        await baseEnv({
          PG_URL,
          NATS_URL,
          DATA_DIR: dir,
          SERVICES: unbuilt,
          SERVICE_CODE: "bundle",
        }),
      );
      expect((await launched.exited).code).toBe(1);
      expect(launched.output()).toContain(
        `SERVICE_CODE=bundle, but services/${unbuilt}/dist/main.mjs is missing: run npm run build:service all`,
      );
      expect(existsSync(join(dir, "stack.json"))).toBe(false);
    },
  );

  it.skipIf(!natsUp)(
    "runs the catalog from services/catalog/dist/main.mjs, ready and stopped like the source",
    async () => {
      await buildService("catalog", { quiet: true });
      const dir = dataDir();
      const env = await baseEnv({
        PG_URL,
        NATS_URL,
        DATA_DIR: dir,
        DB_PREFIX: prefix,
        SERVICES: "catalog",
        SERVICE_CODE: "bundle",
      });
      const launched = startLauncher(env);
      await launched.waitFor(/^shopmesh ready: .*$/m, 60_000);
      const [catalog] = readStack(dir).services;
      expect(await canConnect(catalog?.port as number)).toBe(true);
      const cmdline = readFileSync(`/proc/${catalog?.pid}/cmdline`, "utf8").split("\0");
      expect(cmdline).toContain("services/catalog/dist/main.mjs");
      expect(cmdline).toContain("./services/catalog/dist/telemetry-register.mjs");
      expect(cmdline).not.toContain("tsx");
      launched.child.kill("SIGTERM");
      expect((await launched.exited).code).toBe(0);
      expect(isAlive(catalog?.pid as number)).toBe(false);
    },
    120_000,
  );
});

describe("launcher with its own PostgreSQL and nats-server", () => {
  it.skipIf(!natsServer)(
    "starts both, the watchdog stops both when the launcher is killed, a restart reuses the data",
    async () => {
      const dir = dataDir();
      const env = await baseEnv({
        DATA_DIR: dir,
        SERVICES: "none",
        EMBEDDED_PG_PORT: "0",
        NATS_PORT: "0",
      });
      const first = startLauncher(env);
      await first.waitFor(/^shopmesh ready/m, 120_000);
      const stack = readStack(dir);
      const pg = stack.postgres;
      const nats = stack.nats;
      expect(pg).toMatchObject({ embedded: true });
      expect(nats).toMatchObject({ spawned: true });
      expect(await canConnect(pg?.port as number)).toBe(true);
      expect(await canConnect(Number(new URL(nats?.url as string).port))).toBe(true);

      // Killed outright: no chance to clean up. The watchdog does it.
      first.child.kill("SIGKILL");
      await first.exited;
      await waitUntil(
        () => !isAlive(pg?.pid as number) && !isAlive(nats?.pid as number),
        30_000,
        "postgres and nats-server stopped by the watchdog",
      );
      await waitUntil(() => !existsSync(join(dir, "stack.json")), 5_000, "stack.json removed");

      const second = startLauncher(env);
      await second.waitFor(/^shopmesh ready/m, 60_000);
      const again = readStack(dir);
      // Same cluster: the role made by the first run logs in with the kept password.
      const secrets = JSON.parse(readFileSync(join(dir, "secrets.json"), "utf8"));
      const db = await openDatabase({
        url: `postgres://identity:${secrets.identity}@127.0.0.1:${again.postgres?.port}/identity`,
        schema: {},
        max: 1,
      });
      expect(await db.sql`select current_user as "user"`).toEqual([{ user: "identity" }]);
      await db.close();
      second.child.kill("SIGTERM");
      expect((await second.exited).code).toBe(0);
      expect(isAlive(again.postgres?.pid as number)).toBe(false);
      expect(isAlive(again.nats?.pid as number)).toBe(false);
    },
    240_000,
  );
});

describe("launcher start-up errors", () => {
  it("names the variable of a bad value in one line and exits 1", async () => {
    const launched = startLauncher(await baseEnv({ IDENTITY_PORT: "fifty" }));
    const { code } = await launched.exited;
    expect(code).toBe(1);
    expect(launched.output().trim()).toBe(
      'launcher: config error: IDENTITY_PORT must be an integer (got "fifty")',
    );
  });

  it("names SERVICE_CODE when it is neither source nor bundle", async () => {
    const launched = startLauncher(await baseEnv({ SERVICE_CODE: "binary" }));
    expect((await launched.exited).code).toBe(1);
    expect(launched.output().trim()).toMatch(
      /^launcher: config error: SERVICE_CODE must be one of source, bundle/,
    );
  });

  it("says how to get nats-server when it is missing and NATS_URL is unset", async () => {
    const dir = dataDir();
    const launched = startLauncher(
      await baseEnv({ PG_URL, DATA_DIR: dir, DB_PREFIX: "ltmissing_", PATH: "/nonexistent" }),
    );
    const { code } = await launched.exited;
    expect(code).toBe(1);
    expect(
      launched
        .output()
        .split("\n")
        .filter((l) => l.includes(NATS_NOT_FOUND)),
    ).toHaveLength(1);
    expect(existsSync(join(dir, "stack.json"))).toBe(false);
  });

  it.skipIf(!natsUp || existing.length === 0)(
    "refuses to start a service whose port is taken, naming the variable",
    async () => {
      const name = existing[0] as string;
      const port = await freePort();
      const holder: Server = createServer();
      await new Promise<void>((done) => holder.listen(port, done));
      try {
        const launched = startLauncher(
          await baseEnv({
            PG_URL,
            NATS_URL,
            DATA_DIR: dataDir(),
            DB_PREFIX: "ltbusy_",
            SERVICES: name,
            [`${name.toUpperCase()}_PORT`]: String(port),
          }),
        );
        expect((await launched.exited).code).toBe(1);
        expect(launched.output()).toContain(
          `port ${port} (${name}) is already in use; stop what holds it or set ${name.toUpperCase()}_PORT`,
        );
      } finally {
        holder.close();
        for (const s of DOMAIN_SERVICES) await dropServiceDatabase(PG_URL, `ltbusy_${s}`);
      }
    },
    60_000,
  );
});
