/**
 * Starts one ceiling server (bench/ceiling-server.ts) as a child process and stops it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { repoRoot } from "./stack.js";

export type CeilingKind = "http" | "h2grpc" | "grpcjs" | "runtime";

export interface CeilingServer {
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export async function startCeiling(
  kind: CeilingKind,
  bodies: { json: string; grpcBase64: string },
): Promise<CeilingServer> {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", "bench/ceiling-server.ts", kind],
    {
      cwd: repoRoot,
      env: { ...process.env, CEILING_JSON: bodies.json, CEILING_GRPC_BASE64: bodies.grpcBase64 },
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(() => reject(new Error(`ceiling server ${kind} exited: ${out}`)));
  });
  return {
    port,
    pid: child.pid as number,
    async stop() {
      child.stdin?.end();
      child.kill("SIGTERM");
      await exited;
    },
  };
}
