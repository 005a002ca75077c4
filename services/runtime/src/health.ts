/**
 * grpc.health.v1 (Check, Watch, List) for Kubernetes gRPC probes and load balancers.
 * The empty service name is the server as a whole.
 */
import { EventEmitter, on } from "node:events";
import {
  Health as HealthService,
  HealthCheckResponse_ServingStatus as Status,
} from "@shopmesh/gen/grpc/health/v1/health_pb.js";
import { NotFoundError } from "./errors.js";
import { type ServiceRegistration, serve } from "./grpc-server.js";

export { Status as ServingStatus };

export interface Health {
  /** Sets every registered service (and the server, "") to SERVING or NOT_SERVING. */
  setAll(serving: boolean): void;
  set(service: string, status: Status): void;
  get(service: string): Status | undefined;
  readonly registration: ServiceRegistration;
}

export function createHealth(serviceNames: string[]): Health {
  const statuses = new Map<string, Status>(
    ["", ...serviceNames, HealthService.typeName].map((n) => [n, Status.NOT_SERVING]),
  );
  const changes = new EventEmitter();
  changes.setMaxListeners(0);
  const set = (service: string, status: Status) => {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    changes.emit("change", service);
  };
  const registration = serve(HealthService, {
    check(req) {
      const status = statuses.get(req.service);
      if (status === undefined) throw new NotFoundError(`unknown service "${req.service}"`);
      return { status };
    },
    async *watch(req, ctx) {
      let last: Status | undefined;
      const current = () => statuses.get(req.service) ?? Status.SERVICE_UNKNOWN;
      // Subscribe before the first read so no change slips between them.
      const events = on(changes, "change", { signal: ctx.signal });
      last = current();
      yield { status: last };
      try {
        for await (const [service] of events) {
          if (service !== req.service || current() === last) continue;
          last = current();
          yield { status: last };
        }
      } catch (err) {
        if (!ctx.signal.aborted) throw err;
      }
    },
    list() {
      return {
        statuses: Object.fromEntries([...statuses].map(([name, status]) => [name, { status }])),
      };
    },
  });
  return {
    registration,
    set,
    get: (service) => statuses.get(service),
    setAll(serving) {
      for (const name of statuses.keys()) set(name, serving ? Status.SERVING : Status.NOT_SERVING);
    },
  };
}
