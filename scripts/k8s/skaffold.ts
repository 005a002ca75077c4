/**
 * skaffold.yaml, offline: the config and each profile's effective config (its JSON
 * patches applied) against the vendored skaffold schema, and the project's own rules:
 * one artifact per deployable service, built from the one Dockerfile with its SERVICE
 * build arg, whose image every shopmesh release sets; port forwards to Services the
 * chart renders.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv } from "ajv";
import { parseAllDocuments } from "yaml";
import type { K8sObject } from "./chart.js";
import { ROOT } from "./chart.js";
import type { Finding } from "./validate.js";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

export const SKAFFOLD_FILE = join(ROOT, "skaffold.yaml");
const SCHEMA_FILE = join(ROOT, "deploy", "schemas", "skaffold-v4beta14.json");

/** Loads skaffold.yaml (one document; aliases resolved as skaffold's parser does). */
export function loadSkaffold(file = SKAFFOLD_FILE): Obj {
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  if (docs.length !== 1) throw new Error(`${file}: expected one YAML document, got ${docs.length}`);
  const doc = docs[0];
  if (!doc || doc.errors.length > 0) throw new Error(`${file}: ${doc?.errors[0] ?? "empty"}`);
  return obj(doc.toJS());
}

function pointer(path: string): string[] {
  if (path === "") return [];
  if (!path.startsWith("/")) throw new Error(`JSON pointer "${path}" does not start with /`);
  return path
    .slice(1)
    .split("/")
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
}

/** RFC 6902 add / remove / replace (what the profiles use), on a copy. */
export function applyPatches(config: Obj, patches: unknown[]): Obj {
  const out = structuredClone(config);
  for (const raw of patches) {
    const patch = obj(raw);
    const op = String(patch["op"] ?? "replace");
    const parts = pointer(String(patch["path"]));
    const last = parts.pop();
    if (last === undefined) throw new Error(`patch ${op} on the whole document`);
    let parent: unknown = out;
    for (const part of parts) {
      parent = Array.isArray(parent) ? parent[Number(part)] : obj(parent)[part];
      if (parent === undefined) throw new Error(`patch ${op} ${String(patch["path"])}: no ${part}`);
    }
    if (Array.isArray(parent)) {
      const index = last === "-" ? parent.length : Number(last);
      if (!Number.isInteger(index) || index < 0 || index > parent.length) {
        throw new Error(`patch ${op} ${String(patch["path"])}: bad index`);
      }
      if (op === "add") parent.splice(index, 0, structuredClone(patch["value"]));
      else if (op === "remove" || op === "replace") {
        if (index >= parent.length)
          throw new Error(`patch ${op} ${String(patch["path"])}: no element`);
        if (op === "remove") parent.splice(index, 1);
        else parent[index] = structuredClone(patch["value"]);
      } else throw new Error(`patch op ${op} is not supported here`);
    } else if (isObj(parent)) {
      if ((op === "remove" || op === "replace") && !(last in parent)) {
        throw new Error(`patch ${op} ${String(patch["path"])}: nothing there`);
      }
      if (op === "remove") delete parent[last];
      else if (op === "add" || op === "replace") parent[last] = structuredClone(patch["value"]);
      else throw new Error(`patch op ${op} is not supported here`);
    } else {
      throw new Error(`patch ${op} ${String(patch["path"])}: parent is not a container`);
    }
  }
  return out;
}

export interface SkaffoldCheckOptions {
  /** Deployable services (the chart's services list). */
  services: string[];
  /** The chart rendered with defaults, for the port forwards. */
  rendered: K8sObject[];
  file?: string;
}

export function checkSkaffold(options: SkaffoldCheckOptions): Finding[] {
  const file = options.file ?? SKAFFOLD_FILE;
  const out: Finding[] = [];
  const add = (object: string, message: string) => out.push({ object, message });
  let config: Obj;
  try {
    config = loadSkaffold(file);
  } catch (err) {
    return [{ object: "skaffold.yaml", message: (err as Error).message }];
  }
  const ajv = new Ajv({ allErrors: true, strict: false });
  const validate = ajv.compile(JSON.parse(readFileSync(SCHEMA_FILE, "utf8")));

  const variants: [string, Obj][] = [["skaffold.yaml", config]];
  for (const profile of arr(config["profiles"]).map(obj)) {
    const name = `skaffold.yaml profile ${String(profile["name"])}`;
    try {
      variants.push([name, applyPatches(config, arr(profile["patches"]))]);
    } catch (err) {
      add(name, (err as Error).message);
    }
  }

  // A profile repeats what is wrong with the base config: report that once.
  const seen = new Set<string>();
  for (const [name, variant] of variants) {
    const messages: string[] = [];
    if (!validate(variant)) {
      // anyOf over the builder kinds makes ajv report every branch: keep it short.
      const errors = [
        ...new Set(
          (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? ""}`),
        ),
      ];
      messages.push(`schema: ${errors.slice(0, 6).join("; ")}`);
    } else {
      checkProject(variant, options, (message) => messages.push(message));
    }
    for (const message of messages) {
      if (seen.has(message)) continue;
      seen.add(message);
      add(name, message);
    }
  }
  return out;
}

function checkProject(
  config: Obj,
  options: SkaffoldCheckOptions,
  add: (message: string) => void,
): void {
  const build = obj(config["build"]);
  const artifacts = arr(build["artifacts"]).map(obj);
  const built = new Map<string, string>();
  for (const a of artifacts) {
    const image = String(a["image"]);
    const docker = obj(a["docker"]);
    const dockerfile = String(docker["dockerfile"] ?? "Dockerfile");
    const service = obj(docker["buildArgs"])["SERVICE"];
    if (dockerfile !== "Dockerfile")
      add(`${image}: built from ${dockerfile}, not the one Dockerfile`);
    if (typeof service !== "string") add(`${image}: no SERVICE build arg`);
    else if (!existsSync(join(ROOT, "services", service, "src", "main.ts"))) {
      add(`${image}: SERVICE=${service} has no services/${service}/src/main.ts`);
    } else built.set(service, image);
  }
  for (const service of options.services) {
    if (!built.has(service)) add(`no artifact builds service ${service}`);
  }

  const releases = arr(obj(obj(config["deploy"])["helm"])["releases"]).map(obj);
  const shopmesh = releases.filter((r) => r["chartPath"] === "helm/shopmesh");
  if (shopmesh.length !== 1) add(`expected one release of helm/shopmesh, found ${shopmesh.length}`);
  for (const release of shopmesh) {
    const templates = obj(release["setValueTemplates"]);
    for (const [service, image] of built) {
      const key = `images.${service}`;
      const expected = `{{.IMAGE_FULLY_QUALIFIED_${image.replace(/[^A-Za-z0-9]/g, "_")}}}`;
      if (templates[key] !== expected)
        add(`release ${String(release["name"])}: ${key} is not ${expected}`);
    }
  }
  for (const release of releases) {
    const chartPath = release["chartPath"];
    if (typeof chartPath === "string" && !existsSync(join(ROOT, chartPath, "Chart.yaml"))) {
      add(`release ${String(release["name"])}: ${chartPath} is no chart`);
    }
    if (release["remoteChart"] !== undefined && !release["version"]) {
      add(`release ${String(release["name"])}: remote chart without a pinned version`);
    }
  }

  for (const pf of arr(config["portForward"]).map(obj)) {
    if (pf["resourceType"] !== "service") continue;
    const svc = options.rendered.find(
      (o) => o.kind === "Service" && o.metadata.name === pf["resourceName"],
    );
    if (!svc)
      add(`portForward: Service ${String(pf["resourceName"])} is not rendered by the chart`);
    else if (!arr(obj(svc.spec)["ports"]).some((p) => obj(p)["port"] === pf["port"])) {
      add(`portForward: Service ${String(pf["resourceName"])} has no port ${String(pf["port"])}`);
    }
  }
}
