/**
 * The wording of notifications and the local delivery's log line, without a database.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createLocalDelivery, describeSmtpUrl, maskEmail } from "../src/delivery.js";
import {
  describeReason,
  formatMoney,
  orderCancelledMessage,
  paymentFailedMessage,
  welcomeMessage,
} from "../src/messages.js";

describe("formatMoney", () => {
  it("uses the currency's own minor digits, exactly", () => {
    expect(formatMoney({ currencyCode: "USD", amount: 123456n })).toBe("$1,234.56");
    expect(formatMoney({ currencyCode: "USD", amount: 5n })).toBe("$0.05");
    expect(formatMoney({ currencyCode: "JPY", amount: 1200n })).toBe("¥1,200");
    expect(formatMoney({ currencyCode: "BHD", amount: 1250n })).toBe("BHD\u00a01.250");
    // Beyond 2^53: no float in between to round it.
    expect(formatMoney({ currencyCode: "USD", amount: 900719925474099312n })).toBe(
      "$9,007,199,254,740,993.12",
    );
    expect(formatMoney({ currencyCode: "EUR", amount: -250n })).toBe("-€2.50");
  });

  it("says something true for a code Intl does not know, or no amount", () => {
    expect(formatMoney({ currencyCode: "??", amount: 100n })).toBe("100 (minor units of ??)");
    expect(formatMoney(undefined)).toBe("the amount");
  });
});

describe("wording", () => {
  it("turns reason codes into words", () => {
    expect(describeReason("card_declined")).toBe("the card was declined");
    expect(describeReason("payment_failed: insufficient_funds")).toBe(
      "the payment failed: the card has insufficient funds",
    );
    expect(describeReason("out_of_stock")).toBe("out of stock");
    expect(describeReason("  ")).toBe("no reason was given");
  });

  it("greets by name when there is one", () => {
    expect(welcomeMessage("Ada").body).toMatch(/^Hi Ada,\n/);
    expect(welcomeMessage("").body).toMatch(/^Hi,\n/);
  });

  it("says whether a refund or a retry is coming", () => {
    const id = "0b7e9d2c-1111-4222-8333-444455556666";
    expect(orderCancelledMessage("", id, "user_cancelled", true).body).toContain("refunded");
    expect(orderCancelledMessage("", id, "user_cancelled", false).body).toContain(
      "not been charged",
    );
    expect(paymentFailedMessage("", id, "processing_error", true).body).toContain("temporary");
    expect(paymentFailedMessage("", id, "card_declined", false).body).toContain(
      "another payment method",
    );
    expect(paymentFailedMessage("", id, "card_declined", false).subject).toBe(
      "Payment for your order #0b7e9d2c failed",
    );
  });
});

describe("local delivery", () => {
  it("logs one line naming the notification, with the address masked and no body", async () => {
    const lines: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
        done();
      },
    });
    const delivery = createLocalDelivery(pino({ level: "info" }, sink));
    await delivery.send({
      notificationId: "n-1",
      kind: "WELCOME",
      to: "ada@example.com",
      subject: "Welcome to shopmesh",
      body: "secret-ish body",
    });
    await expect.poll(() => lines.length).toBe(1);
    expect(lines[0]).toMatchObject({
      notification_id: "n-1",
      kind: "WELCOME",
      to: "a***@example.com",
      subject: "Welcome to shopmesh",
    });
    expect(JSON.stringify(lines[0])).not.toContain("secret-ish");
    expect(String(lines[0]?.["msg"])).toContain("delivered locally");
  });

  it("never shows SMTP credentials", () => {
    expect(maskEmail("no-at-sign")).toBe("***");
    expect(describeSmtpUrl("smtps://user:hunter2@mail.example.com:465")).toBe(
      "smtps://mail.example.com:465",
    );
  });
});
