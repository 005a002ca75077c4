/**
 * protovalidate on every incoming request: broken `buf.validate` rules become
 * INVALID_ARGUMENT naming the field, with the violations as a status detail.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { pathToString } from "@bufbuild/protobuf/reflect";
import { createValidator, violationsToProto } from "@bufbuild/protovalidate";
import { InvalidArgumentError } from "./errors.js";

const validator = createValidator();

/** Throws InvalidArgumentError when `message` breaks a rule of its schema. */
export function validateMessage<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): void {
  const result = validator.validate(schema, message);
  if (result.kind === "valid") return;
  if (result.kind === "error") {
    // A rule that cannot be evaluated is a bug in the contract, not the caller's fault.
    throw result.error;
  }
  const violations = result.violations.map((v) => ({
    field: pathToString(v.field),
    rule: v.ruleId,
    message: v.message,
  }));
  const summary = violations
    .map((v) => (v.field ? `${v.field}: ${v.message}` : v.message))
    .join("; ");
  const [proto] = violationsToProto(result.violations);
  throw new InvalidArgumentError(`invalid ${schema.name}: ${summary}`, violations, {
    details: [proto],
  });
}
