/**
 * Rendering helm/shopmesh offline: `helm lint` and `helm template` with the pinned helm
 * (scripts/k8s-tools.sh), the output parsed into plain objects.
 */
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CHART_DIR = join(ROOT, "helm", "shopmesh");
export const RELEASE = "shopmesh";
export const NAMESPACE = "shopmesh";
/** The Kubernetes version templates are rendered for (kind's current node image line). */
export const KUBE_VERSION = "1.33.0";

/** A rendered Kubernetes object, loosely typed: checks read it field by field. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> } & Record<
    string,
    unknown
  >;
  spec?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface RenderOptions {
  /** Another copy of the chart (tests); default helm/shopmesh. */
  chartDir?: string;
  /** Values files, in order (later ones win). */
  values?: string[];
  /** `--set` pairs. */
  set?: Record<string, string | number | boolean>;
}

export interface CommandResult {
  ok: boolean;
  output: string;
}

let helmPath: string | undefined;

/** The pinned helm binary, installed with `go install` on first use. */
export function helm(): string {
  if (!helmPath) helmPath = process.env["HELM"] || installedHelm();
  return helmPath;
}

function installedHelm(): string {
  const res = spawnSync("bash", [join(ROOT, "scripts", "k8s-tools.sh"), "helm"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  const path = res.stdout.trim();
  if (res.status !== 0 || !path) throw new Error("helm is not available (scripts/k8s-tools.sh)");
  return path;
}

function valueArgs(options: RenderOptions): string[] {
  const args: string[] = [];
  for (const file of options.values ?? []) args.push("--values", resolve(ROOT, file));
  for (const [key, value] of Object.entries(options.set ?? {})) {
    args.push("--set", `${key}=${String(value)}`);
  }
  return args;
}

function run(args: string[]): CommandResult {
  const res = spawnSync(helm(), args, { cwd: ROOT, encoding: "utf8", maxBuffer: 64 << 20 });
  if (res.error) throw res.error;
  return { ok: res.status === 0, output: `${res.stdout}${res.stderr}`.trim() };
}

export function lintChart(options: RenderOptions = {}): CommandResult {
  const chart = options.chartDir ?? CHART_DIR;
  return run(["lint", chart, "--strict", "--kube-version", KUBE_VERSION, ...valueArgs(options)]);
}

/** `helm template` output as text; ok false with helm's message when it fails. */
export function templateChart(options: RenderOptions = {}): CommandResult {
  return run([
    "template",
    RELEASE,
    options.chartDir ?? CHART_DIR,
    "--namespace",
    NAMESPACE,
    "--kube-version",
    KUBE_VERSION,
    ...valueArgs(options),
  ]);
}

/** Parses multi-document YAML; throws on a document that does not parse. */
export function parseManifests(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]}`);
    const value = doc.toJS() as K8sObject | null;
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

/** Renders the chart and parses it; throws with helm's own message when rendering fails. */
export function renderChart(options: RenderOptions = {}): K8sObject[] {
  const res = templateChart(options);
  if (!res.ok) throw new Error(res.output);
  return parseManifests(res.output);
}
