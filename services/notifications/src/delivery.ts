/**
 * How a notification leaves the building: the `Delivery` interface and its two
 * implementations, chosen by `createDelivery`:
 * - `createSmtpDelivery`: email through nodemailer to the server in SMTP_URL;
 * - `createLocalDelivery`: no mail server configured (a laptop, CI), so the message is
 *   "delivered locally": one log line, and it counts as sent.
 *
 * A Delivery only hands one message over; retries, attempt rows and status changes are
 * the dispatcher's (dispatcher.ts), so every channel gets them the same way.
 */
import type { Logger } from "@shopmesh/runtime/logger.js";
import { createTransport } from "nodemailer";

export interface OutgoingEmail {
  notificationId: string;
  kind: string;
  to: string;
  subject: string;
  body: string;
}

export interface Delivery {
  /** "smtp" or "local", for logs. */
  readonly name: string;
  /**
   * True when handing over cannot fail (local delivery is a log line): the dispatcher
   * then records the notification SENT in the transaction that creates it, with no
   * lease, retries or second transaction, and calls `send` after the commit.
   */
  readonly infallible?: boolean;
  /** Hands the message to the channel; rejects when it was not accepted. */
  send(message: OutgoingEmail): Promise<void>;
  /** Releases connections. */
  close(): void;
}

export interface SmtpOptions {
  /** smtp:// or smtps:// URL, credentials included when the server needs them. */
  url: string;
  /** The From header. */
  from: string;
  /**
   * Bound on connecting, on the greeting and on any silence from the server. nodemailer's
   * own defaults (2 min to connect, 10 min of silence) would hold an event handler for ages.
   */
  timeoutMs?: number;
}

export function createSmtpDelivery(options: SmtpOptions): Delivery {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const transport = createTransport(
    {
      url: options.url,
      connectionTimeout: timeoutMs,
      greetingTimeout: timeoutMs,
      socketTimeout: timeoutMs,
    },
    { from: options.from },
  );
  return {
    name: "smtp",
    async send(message) {
      await transport.sendMail({
        to: message.to,
        subject: message.subject,
        text: message.body,
        // Lets a support person find the notification from a received email.
        headers: { "X-Shopmesh-Notification-Id": message.notificationId },
      });
    },
    close() {
      transport.close();
    },
  };
}

/** "a***@example.com": enough to tell messages apart in a log, not a mailing list. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf("@");
  if (at <= 0) return "***";
  return `${email[0]}***${email.slice(at)}`;
}

export function createLocalDelivery(logger: Logger): Delivery {
  return {
    name: "local",
    infallible: true,
    async send(message) {
      logger.info(
        {
          notification_id: message.notificationId,
          kind: message.kind,
          to: maskEmail(message.to),
          subject: message.subject,
        },
        "notification delivered locally (SMTP_URL not set)",
      );
    },
    close() {},
  };
}

/** SMTP when a URL is configured, otherwise local delivery. */
export function createDelivery(options: {
  smtpUrl: string | undefined;
  smtpFrom: string;
  logger: Logger;
  timeoutMs?: number;
}): Delivery {
  if (options.smtpUrl === undefined) return createLocalDelivery(options.logger);
  return createSmtpDelivery({
    url: options.smtpUrl,
    from: options.smtpFrom,
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
}

/** Host and port of an SMTP URL, for the start-up log: never its credentials. */
export function describeSmtpUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}
