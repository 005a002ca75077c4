/**
 * `npm start`: the whole of shopmesh on one machine, no cluster. PostgreSQL (given or
 * embedded) with a database per service, NATS with JetStream (given or spawned), then
 * every service that exists as its own supervised process. Ctrl-C stops it all.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadLauncherConfig } from "./config.js";
import { StartupError } from "./errors.js";
import { createLifecycle, settleAll } from "./lifecycle.js";
import { startNats } from "./nats.js";
import { startWatchdog } from "./orphans.js";
import { createOutput } from "./output.js";
import { provisionDatabases, redactUrl, startPostgres } from "./postgres.js";
import { planProcesses } from "./replicas.js";
import { bundlePath, DOMAIN_SERVICES, readyLine, serviceExists, serviceSpec } from "./services.js";
import { claimDataDir, createStackFile } from "./stack-file.js";
import { createSupervisor } from "./supervisor.js";

const t0 = performance.now();
const config = loadLauncherConfig();
const rootDir = fileURLToPath(new URL("../../..", import.meta.url));
const dataDir = resolve(rootDir, config.dataDir);
const stackPath = join(dataDir, "stack.json");
const output = createOutput({
  format: config.logFormat,
  level: config.logLevel,
  color: config.color,
});
const log = output.logger("launcher");
const life = createLifecycle({
  log,
  describeError: (err) => (err instanceof StartupError ? err.message : String(err)),
});

life.run(async () => {
  // Before anything starts: with no bundle to run there is nothing to wait for.
  if (config.code === "bundle") {
    const missing = config.services.filter(
      (name) => serviceExists(rootDir, name) && !existsSync(join(rootDir, bundlePath(name))),
    );
    if (missing.length > 0) {
      throw new StartupError(
        `SERVICE_CODE=bundle, but ${missing.map((name) => bundlePath(name)).join(", ")} ${missing.length > 1 ? "are" : "is"} missing: run npm run build:service all`,
      );
    }
  }
  await claimDataDir(dataDir, stackPath, log);
  const watchdog = startWatchdog(rootDir, stackPath);
  const stack = createStackFile(stackPath, dataDir);
  life.onStop("stack file", async () => {
    stack.remove();
    watchdog.disarm();
  });

  const [pg, nats] = await settleAll([
    startPostgres({
      givenUrl: config.pgUrl,
      dataDir,
      preferredPort: config.embeddedPgPort,
      log: output.logger("postgres"),
    }).then((pg) => {
      life.onStop("postgres", pg.stop, pg.kill);
      return pg;
    }),
    startNats({
      givenUrl: config.natsUrl,
      dataDir,
      preferredPort: config.natsPort,
      log: output.logger("nats"),
    }).then((nats) => {
      life.onStop("nats", nats.stop, nats.kill);
      return nats;
    }),
  ]);
  stack.update({
    postgres: { url: redactUrl(pg.adminUrl), port: pg.port, embedded: pg.embedded, pid: pg.pid },
    nats: { url: nats.url, spawned: nats.spawned, pid: nats.pid },
  });
  const databaseUrls = await provisionDatabases({
    adminUrl: pg.adminUrl,
    services: DOMAIN_SERVICES,
    prefix: config.dbPrefix,
    secretsFile: join(dataDir, "secrets.json"),
  });
  log.debug("databases ready", { databases: [...databaseUrls.keys()] });
  if (life.stopping) return;

  const names = config.services.filter((name) => {
    if (serviceExists(rootDir, name)) return true;
    log.info(`skipping ${name}: services/${name}/src/main.ts does not exist yet`);
    return false;
  });
  const plans = await planProcesses(names, config.replicas, config.ports, config.adminPortBase);
  const ctx = {
    rootDir,
    plans,
    ports: config.ports,
    databaseUrls,
    natsUrl: nats.url,
    logLevel: config.logLevel,
    baseEnv: process.env,
    code: config.code,
  };
  const supervisor = createSupervisor({
    services: plans.map((plan) => serviceSpec(plan, ctx)),
    onLine: output.line,
    onChange: (services) => stack.update({ services }),
    log,
  });
  life.onStop("services", supervisor.stop, supervisor.kill);
  void supervisor.allReady().then(() => {
    const ms = performance.now() - t0;
    output.banner(readyLine(names, plans, { postgresPort: pg.port, natsUrl: nats.url, ms }));
  });
  // Not awaited: a stop must not wait for a stage that is still becoming ready.
  void supervisor.start();
});
