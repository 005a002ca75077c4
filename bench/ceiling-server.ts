/**
 * The ceilings: the least a server can do to answer the benchmark's requests, run as
 * a separate process (as the edge and catalog are) so the load client never shares
 * its event loop.
 *
 *   node --import tsx bench/ceiling-server.ts http     raw node:http: a fixed JSON body
 *   node --import tsx bench/ceiling-server.ts h2grpc   raw node:http2: a gRPC-framed fixed message
 *   node --import tsx bench/ceiling-server.ts grpcjs   bare @grpc/grpc-js: a fixed message, no codec
 *   node --import tsx bench/ceiling-server.ts runtime  the runtime's createGrpcServer (decode,
 *                                                      validate, call context, health, reflection)
 *                                                      answering GetProduct from memory: no database
 *
 * The fixed bodies are the real service's answer to the same request (the parent
 * passes them in CEILING_JSON and CEILING_GRPC_BASE64), so sizes match. Prints
 * `listening <port>` when ready; exits when stdin closes or on SIGTERM.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  CatalogService,
  GetProductResponseSchema,
} from "@shopmesh/gen/shop/catalog/v1/catalog_pb.js";
import { Code, RpcError } from "@shopmesh/runtime/errors.js";
import { createGrpcServer, serve } from "@shopmesh/runtime/grpc-server.js";
import { createLogger } from "@shopmesh/runtime/logger.js";

const kind = process.argv[2];
const json = Buffer.from(process.env["CEILING_JSON"] ?? "{}");
const message = Buffer.from(process.env["CEILING_GRPC_BASE64"] ?? "", "base64");
const GRPC_PATH = "/shop.catalog.v1.CatalogService/GetProduct";

function ready(port: number) {
  process.stdout.write(`listening ${port}\n`);
}

async function main() {
  switch (kind) {
    case "http": {
      const headers = { "content-type": "application/json", "content-length": json.length };
      const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
        req.resume();
        req.on("end", () => {
          res.writeHead(200, headers);
          res.end(json);
        });
      });
      server.listen(0, "127.0.0.1", () => {
        const addr = server.address();
        ready(typeof addr === "object" && addr ? addr.port : 0);
      });
      break;
    }
    case "h2grpc": {
      // Length-prefixed message: compressed flag 0, 4-byte big-endian length, bytes.
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      message.copy(frame, 5);
      const server = http2.createServer();
      server.on("stream", (stream) => {
        stream.on("data", () => {});
        stream.on("end", () => {
          stream.respond(
            { ":status": 200, "content-type": "application/grpc+proto" },
            { waitForTrailers: true },
          );
          stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
          stream.end(frame);
        });
        stream.on("error", () => {});
      });
      server.on("sessionError", () => {});
      server.listen(0, "127.0.0.1", () => {
        const addr = server.address();
        ready(typeof addr === "object" && addr ? addr.port : 0);
      });
      break;
    }
    case "grpcjs": {
      const server = new grpc.Server();
      const identity = (b: Buffer) => b;
      server.addService(
        {
          GetProduct: {
            path: GRPC_PATH,
            requestStream: false,
            responseStream: false,
            requestSerialize: identity,
            requestDeserialize: identity,
            responseSerialize: identity,
            responseDeserialize: identity,
          },
        },
        {
          GetProduct: (_call: unknown, callback: grpc.sendUnaryData<Buffer>) =>
            callback(null, message),
        },
      );
      const port = await new Promise<number>((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
          err ? reject(err) : resolve(p),
        ),
      );
      ready(port);
      break;
    }
    case "runtime": {
      const answer = fromBinary(GetProductResponseSchema, message);
      const unimplemented = () => {
        throw new RpcError(Code.UNIMPLEMENTED, "not in the ceiling server", "");
      };
      const server = createGrpcServer({
        logger: createLogger("ceiling", "warn"),
        services: [
          serve(CatalogService, {
            getProduct: () => answer,
            listProducts: unimplemented,
            createProduct: unimplemented,
            updateProduct: unimplemented,
            adjustStock: unimplemented,
          }),
        ],
      });
      ready(await server.listen(0, "127.0.0.1"));
      break;
    }
    default:
      process.stderr.write(`usage: ceiling-server.ts http|h2grpc|grpcjs|runtime (got ${kind})\n`);
      process.exit(2);
  }
}

process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
process.on("SIGTERM", () => process.exit(0));
await main();
