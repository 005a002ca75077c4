/**
 * gRPC server reflection (grpc.reflection.v1, and v1alpha for older grpcurl), served
 * from the protobuf-es descriptors in gen/: no proto files or proto-loader at run time.
 */
import { type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as v1 from "@shopmesh/gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "@shopmesh/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { type ServiceRegistration, serve } from "./grpc-server.js";

/** The request oneof, identical in v1 and v1alpha. */
type Question = v1.ServerReflectionRequest["messageRequest"];

interface Index {
  services: string[];
  files: Map<string, DescFile>;
  symbols: Map<string, DescFile>;
  extensions: Map<string, Map<number, DescFile>>;
}

function buildIndex(services: DescService[]): Index {
  const index: Index = {
    services: services.map((s) => s.typeName),
    files: new Map(),
    symbols: new Map(),
    extensions: new Map(),
  };
  const addFile = (file: DescFile) => {
    if (index.files.has(file.proto.name)) return;
    index.files.set(file.proto.name, file);
    for (const dep of file.dependencies) addFile(dep);
    for (const svc of file.services) {
      index.symbols.set(svc.typeName, file);
      for (const m of svc.methods) index.symbols.set(`${svc.typeName}.${m.name}`, file);
    }
    for (const e of file.enums) index.symbols.set(e.typeName, file);
    const addMessages = (msgs: DescFile["messages"]) => {
      for (const m of msgs) {
        index.symbols.set(m.typeName, file);
        for (const e of m.nestedEnums) index.symbols.set(e.typeName, file);
        addMessages(m.nestedMessages);
        addExtensions(m.nestedExtensions);
      }
    };
    const addExtensions = (exts: DescFile["extensions"]) => {
      for (const x of exts) {
        index.symbols.set(x.typeName, file);
        const byNumber = index.extensions.get(x.extendee.typeName) ?? new Map<number, DescFile>();
        byNumber.set(x.number, file);
        index.extensions.set(x.extendee.typeName, byNumber);
      }
    };
    addMessages(file.messages);
    addExtensions(file.extensions);
  };
  for (const s of services) addFile(s.file);
  return index;
}

/** The file and everything it imports, dependencies first, each once. */
function withDependencies(file: DescFile): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    for (const d of f.dependencies) visit(d);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
  };
  visit(file);
  return out;
}

const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

// The answer as a plain init object: v1 and v1alpha responses have the same shape.
function answer(index: Index, q: Question) {
  const files = (file: DescFile | undefined, what: string) =>
    file === undefined
      ? {
          case: "errorResponse" as const,
          value: { errorCode: NOT_FOUND, errorMessage: `${what} not found` },
        }
      : {
          case: "fileDescriptorResponse" as const,
          value: { fileDescriptorProto: withDependencies(file) },
        };
  switch (q.case) {
    case "listServices":
      return {
        case: "listServicesResponse" as const,
        value: { service: index.services.map((name) => ({ name })) },
      };
    case "fileByFilename":
      return files(index.files.get(q.value), `file ${q.value}`);
    case "fileContainingSymbol":
      return files(index.symbols.get(q.value), `symbol ${q.value}`);
    case "fileContainingExtension":
      return files(
        index.extensions.get(q.value.containingType)?.get(q.value.extensionNumber),
        `extension ${q.value.containingType}/${q.value.extensionNumber}`,
      );
    case "allExtensionNumbersOfType":
      return {
        case: "allExtensionNumbersResponse" as const,
        value: {
          baseTypeName: q.value,
          extensionNumber: [...(index.extensions.get(q.value)?.keys() ?? [])],
        },
      };
    default:
      return {
        case: "errorResponse" as const,
        value: { errorCode: UNIMPLEMENTED, errorMessage: "unsupported reflection request" },
      };
  }
}

/** Reflection services (v1 and v1alpha) describing `services` and themselves. */
export function createReflectionServices(services: DescService[]): ServiceRegistration[] {
  const index = buildIndex([...services, v1.ServerReflection, v1alpha.ServerReflection]);
  return [
    serve(v1.ServerReflection, {
      async *serverReflectionInfo(reqs) {
        for await (const req of reqs) {
          yield {
            validHost: req.host,
            originalRequest: req,
            messageResponse: answer(index, req.messageRequest),
          };
        }
      },
    }),
    serve(v1alpha.ServerReflection, {
      async *serverReflectionInfo(reqs) {
        for await (const req of reqs) {
          yield {
            validHost: req.host,
            originalRequest: req,
            messageResponse: answer(index, req.messageRequest as Question),
          };
        }
      },
    }),
  ];
}
