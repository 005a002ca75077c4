/**
 * A small HTTP/1.1 client on node:http with a keep-alive Agent: the load client of the
 * REST and Connect scenarios and of their raw node:http ceiling, so that the client's
 * own cost is the same on both sides of every ratio.
 */
import * as http from "node:http";

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface HttpClient {
  request(
    method: string,
    path: string,
    options?: { body?: string | Buffer; headers?: Record<string, string> },
  ): Promise<HttpResponse>;
  /** JSON in and out; rejects on a non-2xx status with the status and body in the message. */
  json<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<T>;
  close(): void;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    what: string,
  ) {
    super(`${what}: HTTP ${status} ${body.slice(0, 200)}`);
  }
}

export function createHttpClient(baseUrl: string, maxSockets = 64): HttpClient {
  const url = new URL(baseUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  const request: HttpClient["request"] = (method, path, options = {}) =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { ...options.headers };
      if (options.body !== undefined) headers["content-length"] = Buffer.byteLength(options.body);
      const req = http.request(
        { agent, host: url.hostname, port: url.port, method, path, headers },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
            }),
          );
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(options.body);
    });
  return {
    request,
    async json<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>) {
      const res = await request(method, path, {
        headers: { "content-type": "application/json", ...headers },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = res.body.toString("utf8");
      if (res.status < 200 || res.status >= 300)
        throw new HttpError(res.status, text, `${method} ${path}`);
      return (text === "" ? undefined : JSON.parse(text)) as T;
    },
    close: () => agent.destroy(),
  };
}
