/**
 * Replicas: which processes `npm start` runs and on which ports. Every replica is its
 * own process. A domain service's replica r listens on its base port + 10·r (a free
 * port when that one is busy) and is reached by the others through a static address
 * list (grpc-js `ipv4:` target, balanced round robin). Edge replicas share the edge
 * port (SO_REUSEPORT: the kernel spreads connections). Every process also gets its
 * own admin port (metrics, health) counted up from ADMIN_PORT_BASE.
 */
import type { ServiceName } from "./config.js";
import { StartupError } from "./errors.js";
import { freePort, isPortFree } from "./net.js";

/** One process to run: a replica of a service and its ports. */
export interface ProcessPlan {
  service: ServiceName;
  replica: number;
  port: number;
  adminPort: number;
}

/** Port step between replicas of one service: 50053, 50063, 50073 ... */
export const REPLICA_PORT_STEP = 10;

/**
 * Assigns the ports of every replica of `names`. Replica 0 keeps the configured port
 * and fails start-up, naming the variable, when it is taken; further replicas and
 * admin ports fall back to a free port.
 */
export async function planProcesses(
  names: readonly ServiceName[],
  replicas: Record<ServiceName, number>,
  ports: Record<ServiceName, number>,
  adminPortBase: number,
): Promise<ProcessPlan[]> {
  const used = new Set<number>();
  const take = async (preferred: number): Promise<number> => {
    if (preferred > 0 && preferred <= 65535 && !used.has(preferred)) {
      if (await isPortFree(preferred)) {
        used.add(preferred);
        return preferred;
      }
    }
    for (;;) {
      const port = await freePort();
      if (!used.has(port)) {
        used.add(port);
        return port;
      }
    }
  };
  for (const name of names) {
    if (!(await isPortFree(ports[name]))) {
      throw new StartupError(
        `port ${ports[name]} (${name}) is already in use; stop what holds it or set ${name.toUpperCase()}_PORT`,
      );
    }
    used.add(ports[name]);
  }
  const plans: ProcessPlan[] = [];
  for (const name of names) {
    for (let replica = 0; replica < replicas[name]; replica++) {
      const port =
        replica === 0 || name === "edge"
          ? ports[name]
          : await take(ports[name] + REPLICA_PORT_STEP * replica);
      plans.push({ service: name, replica, port, adminPort: 0 });
    }
  }
  for (const [i, plan] of plans.entries()) {
    plan.adminPort = await take(adminPortBase === 0 ? 0 : adminPortBase + i);
  }
  return plans;
}

/** The ports of every replica of `service`, in replica order. */
export function replicaPorts(plans: readonly ProcessPlan[], service: ServiceName): number[] {
  return plans.filter((p) => p.service === service).map((p) => p.port);
}

/**
 * A grpc-js target for the replicas on `ports` of this machine: "127.0.0.1:50053" for
 * one, "ipv4:127.0.0.1:50053,127.0.0.1:50063" (grpc-js's IP resolver) for several.
 */
export function grpcTarget(ports: readonly number[]): string {
  const list = ports.map((p) => `127.0.0.1:${p}`).join(",");
  return ports.length > 1 ? `ipv4:${list}` : list;
}
