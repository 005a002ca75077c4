/**
 * Checks over rendered manifests, each returning findings (empty: passed):
 *
 * - `validateSchemas`: every object against its schema: Kubernetes, Istio and Gateway API
 *   kinds through kubernetes-models (types, formats, required fields, enums), Envoy
 *   Gateway kinds through the subsets in deploy/schemas/envoy-gateway. A kind with no
 *   schema is a finding, never a pass.
 * - `checkWorkloads`: every container of every workload has resource requests (cpu,
 *   memory) and a memory limit, a restrictive securityContext (non-root, no privilege
 *   escalation, all capabilities dropped, read-only root, seccomp); long-running ones have
 *   startup, readiness and liveness probes; images carry a tag other than latest.
 * - `checkReferences`: what objects name exists in the release (Services' and PDBs'
 *   selectors, HPA targets, ServiceAccounts, ConfigMaps and Secrets, routes' parents and
 *   backends, policies' targets, AuthorizationPolicy principals, mesh hosts).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as gatewayApi from "@kubernetes-models/gateway-api";
import * as istio from "@kubernetes-models/istio";
import { Ajv, type ValidateFunction } from "ajv";
import * as kubernetes from "kubernetes-models";
import { type K8sObject, NAMESPACE, ROOT } from "./chart.js";

export interface Finding {
  /** kind/name of the object. */
  object: string;
  message: string;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

export const ref = (o: K8sObject): string => `${o.kind}/${o.metadata?.name ?? "?"}`;

// --- schemas ---------------------------------------------------------------------------

interface ModelClass {
  apiVersion: string;
  kind: string;
  new (data: unknown): { validate(): void };
}

let models: Map<string, ModelClass> | undefined;

/** apiVersion/kind -> model class, collected from the three packages' namespaces. */
function modelRegistry(): Map<string, ModelClass> {
  if (models) return models;
  const found = new Map<string, ModelClass>();
  const walk = (ns: unknown, depth: number) => {
    if (!isObj(ns) || depth > 4) return;
    for (const value of Object.values(ns)) {
      if (typeof value === "function") {
        const m = value as unknown as Partial<ModelClass>;
        if (typeof m.apiVersion === "string" && typeof m.kind === "string") {
          found.set(`${m.apiVersion}/${m.kind}`, value as unknown as ModelClass);
        }
      } else walk(value, depth + 1);
    }
  };
  walk(kubernetes, 0);
  walk(istio, 0);
  walk(gatewayApi, 0);
  models = found;
  return found;
}

let extra: Map<string, ValidateFunction> | undefined;

/** JSON schemas kept in the repo for kinds no npm package models. */
function extraSchemas(): Map<string, ValidateFunction> {
  if (extra) return extra;
  const ajv = new Ajv({ allErrors: true, strict: false });
  const load = (file: string) =>
    ajv.compile(JSON.parse(readFileSync(join(ROOT, "deploy", "schemas", file), "utf8")));
  extra = new Map([
    [
      "gateway.envoyproxy.io/v1alpha1/BackendTrafficPolicy",
      load("envoy-gateway/backendtrafficpolicy-v1alpha1.json"),
    ],
    ["gateway.envoyproxy.io/v1alpha1/EnvoyProxy", load("envoy-gateway/envoyproxy-v1alpha1.json")],
  ]);
  return extra;
}

export function validateSchemas(objects: K8sObject[]): Finding[] {
  const findings: Finding[] = [];
  for (const o of objects) {
    const key = `${o.apiVersion}/${o.kind}`;
    const model = modelRegistry().get(key);
    const schema = extraSchemas().get(key);
    if (model) {
      try {
        new model(o).validate();
      } catch (err) {
        findings.push({ object: ref(o), message: `schema: ${(err as Error).message}` });
      }
    } else if (schema) {
      if (!schema(o)) {
        const errors = (schema.errors ?? [])
          .map((e) => `${e.instancePath || "/"} ${e.message ?? ""}`.trim())
          .join("; ");
        findings.push({ object: ref(o), message: `schema: ${errors}` });
      }
    } else {
      findings.push({ object: ref(o), message: `no schema for ${key}` });
    }
  }
  return findings;
}

// --- workload policy --------------------------------------------------------------------

const WORKLOADS = new Set(["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"]);
/** Workloads that run until stopped: they need probes. */
const LONG_RUNNING = new Set(["Deployment", "StatefulSet", "DaemonSet"]);

/** The pod template of a workload. */
export function podTemplate(o: K8sObject): { metadata: Obj; spec: Obj } | undefined {
  if (!WORKLOADS.has(o.kind)) return undefined;
  const spec = obj(o.spec);
  const template =
    o.kind === "CronJob"
      ? obj(obj(obj(spec["jobTemplate"])["spec"])["template"])
      : obj(spec["template"]);
  return { metadata: obj(template["metadata"]), spec: obj(template["spec"]) };
}

const hasQuantity = (v: unknown) => typeof v === "number" || (typeof v === "string" && v !== "");

function checkContainer(
  o: K8sObject,
  pod: Obj,
  c: Obj,
  role: "container" | "initContainer",
  out: Finding[],
): void {
  const name = `${role} ${str(c["name"]) ?? "?"}`;
  const add = (message: string) => out.push({ object: ref(o), message: `${name}: ${message}` });

  const resources = obj(c["resources"]);
  const requests = obj(resources["requests"]);
  const limits = obj(resources["limits"]);
  if (!hasQuantity(requests["cpu"])) add("no cpu request (resources.requests.cpu)");
  if (!hasQuantity(requests["memory"])) add("no memory request (resources.requests.memory)");
  if (!hasQuantity(limits["memory"])) add("no memory limit (resources.limits.memory)");

  const podSc = obj(pod["securityContext"]);
  const sc = obj(c["securityContext"]);
  if (!isObj(c["securityContext"])) add("no securityContext");
  const runAsNonRoot = sc["runAsNonRoot"] ?? podSc["runAsNonRoot"];
  const runAsUser = sc["runAsUser"] ?? podSc["runAsUser"];
  if (runAsNonRoot !== true) add("securityContext.runAsNonRoot is not true (pod or container)");
  if (runAsUser === 0) add("securityContext.runAsUser is 0 (root)");
  if (sc["privileged"] === true) add("securityContext.privileged is true");
  if (sc["allowPrivilegeEscalation"] !== false) {
    add("securityContext.allowPrivilegeEscalation is not false");
  }
  if (sc["readOnlyRootFilesystem"] !== true)
    add("securityContext.readOnlyRootFilesystem is not true");
  const drop = arr(obj(sc["capabilities"])["drop"]);
  if (!drop.includes("ALL")) add("securityContext.capabilities.drop does not include ALL");
  if (arr(obj(sc["capabilities"])["add"]).length > 0)
    add("securityContext.capabilities.add is set");
  const seccomp =
    str(obj(sc["seccompProfile"])["type"]) ?? str(obj(podSc["seccompProfile"])["type"]);
  if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") {
    add("no seccompProfile (RuntimeDefault or Localhost, pod or container)");
  }

  const image = str(c["image"]) ?? "";
  const tag = image.includes("@") ? "digest" : image.split("/").pop()?.split(":")[1];
  if (!tag) add(`image "${image}" has no tag`);
  else if (tag === "latest") add(`image "${image}" uses the latest tag`);

  if (role === "container" && LONG_RUNNING.has(o.kind)) {
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      const p = obj(c[probe]);
      const handlers = ["grpc", "httpGet", "tcpSocket", "exec"].filter((h) => isObj(p[h]));
      if (handlers.length !== 1) add(`no ${probe}`);
    }
  }
}

export function checkWorkloads(objects: K8sObject[]): Finding[] {
  const out: Finding[] = [];
  for (const o of objects) {
    const pod = podTemplate(o);
    if (!pod) continue;
    const containers = arr(pod.spec["containers"]);
    if (containers.length === 0) out.push({ object: ref(o), message: "no containers" });
    for (const c of containers) checkContainer(o, pod.spec, obj(c), "container", out);
    for (const c of arr(pod.spec["initContainers"])) {
      checkContainer(o, pod.spec, obj(c), "initContainer", out);
    }
    if (pod.spec["hostNetwork"] === true || pod.spec["hostPID"] === true) {
      out.push({ object: ref(o), message: "uses the host's network or PID namespace" });
    }
  }
  return out;
}

// --- references -------------------------------------------------------------------------

export interface ReferenceOptions {
  /** Secrets the release expects to exist already (external stores). */
  externalSecrets?: string[];
}

const matches = (selector: Obj, labels: Obj) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

export function checkReferences(objects: K8sObject[], options: ReferenceOptions = {}): Finding[] {
  const out: Finding[] = [];
  const named = (kind: string) =>
    new Set(objects.filter((o) => o.kind === kind).map((o) => o.metadata.name));
  const secrets = new Set([...named("Secret"), ...(options.externalSecrets ?? [])]);
  const configMaps = named("ConfigMap");
  const serviceAccounts = named("ServiceAccount");
  const services = new Map(
    objects.filter((o) => o.kind === "Service").map((o) => [o.metadata.name, o]),
  );
  const workloads = objects.filter((o) => podTemplate(o));
  const podLabels = workloads.map((o) => obj(podTemplate(o)?.metadata["labels"]));
  const selects = (selector: Obj) => podLabels.some((labels) => matches(selector, labels));
  const add = (o: K8sObject, message: string) => out.push({ object: ref(o), message });
  const host = (name: string) => `${name}.${NAMESPACE}.svc.cluster.local`;

  for (const o of objects) {
    const spec = obj(o.spec);
    switch (o.kind) {
      case "Service":
      case "PodDisruptionBudget": {
        const selector =
          o.kind === "Service" ? obj(spec["selector"]) : obj(obj(spec["selector"])["matchLabels"]);
        if (!selects(selector)) add(o, "its selector matches no pod template of the release");
        break;
      }
      case "HorizontalPodAutoscaler": {
        const target = obj(spec["scaleTargetRef"]);
        const found = objects.some(
          (w) => w.kind === target["kind"] && w.metadata.name === target["name"],
        );
        if (!found)
          add(
            o,
            `scaleTargetRef ${String(target["kind"])}/${String(target["name"])} is not in the release`,
          );
        const workload = objects.find(
          (w) => w.kind === target["kind"] && w.metadata.name === target["name"],
        );
        if (workload && obj(workload.spec)["replicas"] !== undefined) {
          add(
            o,
            `${ref(workload)} sets replicas, which would fight the autoscaler on every upgrade`,
          );
        }
        break;
      }
      case "AuthorizationPolicy": {
        const selector = obj(obj(spec["selector"])["matchLabels"]);
        if (spec["selector"] !== undefined && !selects(selector)) {
          add(o, "its selector matches no pod template of the release");
        }
        for (const rule of arr(spec["rules"])) {
          for (const from of arr(obj(rule)["from"])) {
            for (const principal of arr(obj(obj(from)["source"])["principals"])) {
              const m = /^[^/]+\/ns\/([^/]+)\/sa\/(.+)$/.exec(String(principal));
              if (!m)
                add(o, `principal "${String(principal)}" is not <trust domain>/ns/<ns>/sa/<name>`);
              else if (m[1] === NAMESPACE && !serviceAccounts.has(m[2] ?? "")) {
                add(o, `principal "${String(principal)}" names no ServiceAccount of the release`);
              }
            }
          }
        }
        break;
      }
      case "DestinationRule":
      case "VirtualService": {
        const hosts = o.kind === "DestinationRule" ? [spec["host"]] : arr(spec["hosts"]);
        for (const h of hosts) {
          if (![...services.keys()].some((name) => host(name) === h)) {
            add(o, `host "${String(h)}" is no Service of the release`);
          }
        }
        break;
      }
      case "HTTPRoute":
      case "GRPCRoute": {
        for (const parent of arr(spec["parentRefs"])) {
          const p = obj(parent);
          const gw = objects.find((g) => g.kind === "Gateway" && g.metadata.name === p["name"]);
          if (!gw) add(o, `parentRef Gateway/${String(p["name"])} is not in the release`);
          else if (p["sectionName"] !== undefined) {
            const listener = arr(obj(gw.spec)["listeners"]).find(
              (l) => obj(l)["name"] === p["sectionName"],
            );
            if (!listener)
              add(o, `Gateway/${gw.metadata.name} has no listener "${String(p["sectionName"])}"`);
            else {
              const kinds = arr(obj(obj(listener)["allowedRoutes"])["kinds"]).map(
                (k) => obj(k)["kind"],
              );
              if (kinds.length > 0 && !kinds.includes(o.kind)) {
                add(o, `listener "${String(p["sectionName"])}" does not allow ${o.kind}`);
              }
            }
          }
        }
        for (const rule of arr(spec["rules"])) {
          for (const backend of arr(obj(rule)["backendRefs"])) {
            const b = obj(backend);
            const svc = services.get(String(b["name"]));
            if (!svc) add(o, `backendRef Service/${String(b["name"])} is not in the release`);
            else if (!arr(obj(svc.spec)["ports"]).some((port) => obj(port)["port"] === b["port"])) {
              add(o, `backendRef Service/${String(b["name"])} has no port ${String(b["port"])}`);
            }
          }
        }
        break;
      }
      case "BackendTrafficPolicy": {
        for (const target of arr(spec["targetRefs"])) {
          const t = obj(target);
          if (!objects.some((x) => x.kind === t["kind"] && x.metadata.name === t["name"])) {
            add(o, `targetRef ${String(t["kind"])}/${String(t["name"])} is not in the release`);
          }
        }
        break;
      }
      case "Gateway": {
        const params = obj(obj(spec["infrastructure"])["parametersRef"]);
        if (params["kind"] !== undefined) {
          if (
            !objects.some((x) => x.kind === params["kind"] && x.metadata.name === params["name"])
          ) {
            add(
              o,
              `infrastructure.parametersRef ${String(params["kind"])}/${String(params["name"])} is not in the release`,
            );
          }
        }
        const classes = named("GatewayClass");
        if (classes.size > 0 && !classes.has(String(spec["gatewayClassName"]))) {
          add(
            o,
            `gatewayClassName "${String(spec["gatewayClassName"])}" is not the release's GatewayClass`,
          );
        }
        break;
      }
    }

    const pod = podTemplate(o);
    if (!pod) continue;
    const sa = str(pod.spec["serviceAccountName"]);
    if (sa && !serviceAccounts.has(sa)) add(o, `serviceAccountName ${sa} is not in the release`);
    const containers = [...arr(pod.spec["containers"]), ...arr(pod.spec["initContainers"])].map(
      obj,
    );
    for (const c of containers) {
      for (const e of arr(c["env"]).map(obj)) {
        const from = obj(e["valueFrom"]);
        const secret = str(obj(from["secretKeyRef"])["name"]);
        const cm = str(obj(from["configMapKeyRef"])["name"]);
        if (secret && !secrets.has(secret))
          add(o, `env ${String(e["name"])}: Secret ${secret} is not in the release`);
        if (cm && !configMaps.has(cm))
          add(o, `env ${String(e["name"])}: ConfigMap ${cm} is not in the release`);
      }
      for (const source of arr(c["envFrom"]).map(obj)) {
        const cm = str(obj(source["configMapRef"])["name"]);
        const secret = str(obj(source["secretRef"])["name"]);
        if (cm && !configMaps.has(cm)) add(o, `envFrom: ConfigMap ${cm} is not in the release`);
        if (secret && !secrets.has(secret))
          add(o, `envFrom: Secret ${secret} is not in the release`);
      }
    }
    for (const volume of arr(pod.spec["volumes"]).map(obj)) {
      const cm = str(obj(volume["configMap"])["name"]);
      const secret = str(obj(volume["secret"])["secretName"]);
      if (cm && !configMaps.has(cm))
        add(o, `volume ${String(volume["name"])}: ConfigMap ${cm} is not in the release`);
      if (secret && !secrets.has(secret))
        add(o, `volume ${String(volume["name"])}: Secret ${secret} is not in the release`);
    }
  }
  return out;
}

/** Every check over one rendering. */
export function checkManifests(objects: K8sObject[], options: ReferenceOptions = {}): Finding[] {
  return [
    ...validateSchemas(objects),
    ...checkWorkloads(objects),
    ...checkReferences(objects, options),
  ];
}
