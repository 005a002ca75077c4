/**
 * The Dockerfile cannot be built here (no Docker engine), so it is kept right by
 * construction and checked for what breaks quietly: stages named before use, build args
 * declared in the stage that reads them, base images pinned by tag, a non-root numeric
 * USER and an exec-form ENTRYPOINT under an init in the final stage, and every file the
 * build copies kept in the build context by .dockerignore.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./chart.js";
import type { Finding } from "./validate.js";

interface Instruction {
  line: number;
  keyword: string;
  args: string;
}

/** Instructions with line continuations joined and comments dropped. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let current: Instruction | undefined;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line) || (line.trim() === "" && !current)) return;
    const continued = line.endsWith("\\");
    const body = continued ? line.slice(0, -1) : line;
    if (current) current.args += ` ${body.trim()}`;
    else {
      const m = /^\s*([A-Za-z]+)\s*(.*)$/.exec(body);
      if (!m) return;
      current = { line: i + 1, keyword: (m[1] ?? "").toUpperCase(), args: (m[2] ?? "").trim() };
    }
    if (!continued) {
      out.push(current);
      current = undefined;
    }
  });
  if (current) out.push(current);
  return out;
}

/** Does .dockerignore (gitignore-like patterns, last match wins) keep `path` in the context? */
export function keptInContext(path: string, ignore: string[]): boolean {
  let kept = true;
  for (const raw of ignore) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const negate = line.startsWith("!");
    const pattern = (negate ? line.slice(1) : line).replace(/^\/+/, "").replace(/\/+$/, "");
    const re = new RegExp(
      `^${pattern
        .split("**")
        .map((part) =>
          part
            .replace(/[.+^${}()|[\]\\]/g, "\\$&")
            .replace(/\*/g, "[^/]*")
            .replace(/\?/g, "[^/]"),
        )
        .join(".*")}(/.*)?$`,
    );
    if (re.test(path)) kept = negate;
  }
  return kept;
}

export function checkDockerfile(file = join(ROOT, "Dockerfile")): Finding[] {
  const out: Finding[] = [];
  const add = (line: number, message: string) =>
    out.push({ object: `Dockerfile:${line}`, message });
  const instructions = parseDockerfile(readFileSync(file, "utf8"));
  const ignorePath = join(ROOT, ".dockerignore");
  const ignore = existsSync(ignorePath) ? readFileSync(ignorePath, "utf8").split("\n") : [];
  if (ignore.length === 0)
    add(0, "no .dockerignore: the whole tree (node_modules included) is the context");

  const globalArgs = new Map<string, string>();
  const stages: string[] = [];
  let stageArgs = new Set<string>();
  let inStage = false;
  let lastUser: string | undefined;
  let entrypoint: string | undefined;

  for (const ins of instructions) {
    const uses = [...ins.args.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)].map((m) => m[1] ?? "");
    if (ins.keyword === "ARG") {
      const [name, value] = ins.args.split("=", 2);
      if (!inStage) globalArgs.set(name ?? "", value ?? "");
      else stageArgs.add(name ?? "");
      continue;
    }
    if (ins.keyword === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) {
        add(ins.line, `FROM ${ins.args}: not understood`);
        continue;
      }
      let image = m[1] ?? "";
      image = image.replace(
        /\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g,
        (_, v: string) => globalArgs.get(v) ?? `<${v}>`,
      );
      if (!stages.includes(image)) {
        if (image.includes("<")) add(ins.line, `FROM ${m[1]}: ARG without a default`);
        const tag = image.includes("@") ? "digest" : image.split("/").pop()?.split(":")[1];
        if (!tag || tag === "latest") add(ins.line, `FROM ${image}: pin the base image by tag`);
      }
      if (m[2]) stages.push(m[2]);
      inStage = true;
      stageArgs = new Set();
      lastUser = undefined;
      entrypoint = undefined;
      continue;
    }
    const predefined = new Set([
      "BUILDPLATFORM",
      "TARGETPLATFORM",
      "TARGETARCH",
      "TARGETOS",
      "BUILDARCH",
    ]);
    for (const name of uses) {
      // Shell variables inside RUN are the shell's; ENV-defined ones are fine too.
      if (ins.keyword === "RUN" || ins.keyword === "ENTRYPOINT" || ins.keyword === "CMD") {
        if (name === "SERVICE" && !stageArgs.has("SERVICE")) {
          add(ins.line, "uses SERVICE without ARG SERVICE in this stage");
        }
        continue;
      }
      if (!stageArgs.has(name) && !predefined.has(name) && !globalArgs.has(name)) {
        add(ins.line, `${ins.keyword} uses $${name}, not declared by ARG in this stage`);
      }
    }
    if (ins.keyword === "COPY") {
      const from = /--from=(\S+)/.exec(ins.args)?.[1];
      if (from && !stages.includes(from))
        add(ins.line, `COPY --from=${from}: no such earlier stage`);
      if (!from) {
        const parts = ins.args.split(/\s+/).filter((p) => !p.startsWith("--"));
        for (const source of parts.slice(0, -1)) {
          if (source === "." || source === "./") continue;
          const path = source.replace(/^\.\//, "").replace(/\/+$/, "");
          if (!existsSync(join(ROOT, path))) add(ins.line, `COPY ${source}: not in the repository`);
          else if (!keptInContext(path, ignore))
            add(ins.line, `COPY ${source}: excluded by .dockerignore`);
        }
      }
    }
    if (ins.keyword === "USER") lastUser = ins.args;
    if (ins.keyword === "ENTRYPOINT") entrypoint = ins.args;
  }

  const last = instructions.at(-1)?.line ?? 0;
  if (!lastUser) add(last, "the final stage sets no USER (it would run as root)");
  else if (!/^[1-9][0-9]*(:[0-9]+)?$/.test(lastUser)) {
    add(
      last,
      `USER ${lastUser}: use a numeric non-root uid (runAsNonRoot can only verify numbers)`,
    );
  }
  if (!entrypoint?.startsWith("[")) add(last, "the final ENTRYPOINT is not in exec form");
  else if (!/tini|dumb-init/.test(entrypoint))
    add(last, "the final ENTRYPOINT runs no init (tini)");
  return out;
}
