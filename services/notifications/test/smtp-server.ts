/**
 * `startSmtpServer(mode)`: a tiny real SMTP server on node:net for tests, speaking just
 * enough of RFC 5321 (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) for nodemailer.
 * - "accept": takes every message and keeps it (envelope, headers, raw data);
 * - "refuse": answers the connection with 554 and hangs up;
 * - "silent": accepts the connection and never says a word (a hung server).
 */
import { once } from "node:events";
import { createServer, type Socket } from "node:net";

export interface ReceivedMail {
  from: string;
  to: string[];
  /** Header name (lower case) → unfolded value. */
  headers: Record<string, string>;
  data: string;
}

export async function startSmtpServer(mode: "accept" | "refuse" | "silent") {
  const messages: ReceivedMail[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;

  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    if (mode === "refuse") {
      socket.end("554 5.3.2 test server refuses service\r\n");
      return;
    }
    if (mode === "silent") return;

    const reply = (line: string) => socket.write(`${line}\r\n`);
    let envelope = { from: "", to: [] as string[] };
    let dataLines: string[] | undefined;
    let buffered = "";

    const onLine = (line: string) => {
      if (dataLines !== undefined) {
        if (line === ".") {
          messages.push(parseMail(envelope.from, envelope.to, dataLines));
          dataLines = undefined;
          envelope = { from: "", to: [] };
          reply("250 2.0.0 queued");
        } else {
          // Dot-stuffing: a leading "." was doubled by the client.
          dataLines.push(line.startsWith("..") ? line.slice(1) : line);
        }
        return;
      }
      const verb = line.split(" ", 1)[0]?.toUpperCase() ?? "";
      const address = /<([^>]*)>/.exec(line)?.[1] ?? "";
      switch (verb) {
        case "EHLO":
          reply("250-test.local greets you");
          reply("250 8BITMIME");
          break;
        case "HELO":
          reply("250 test.local");
          break;
        case "MAIL":
          envelope.from = address;
          reply("250 2.1.0 ok");
          break;
        case "RCPT":
          envelope.to.push(address);
          reply("250 2.1.5 ok");
          break;
        case "DATA":
          dataLines = [];
          reply("354 end data with <CR><LF>.<CR><LF>");
          break;
        case "RSET":
          envelope = { from: "", to: [] };
          reply("250 2.0.0 ok");
          break;
        case "NOOP":
          reply("250 2.0.0 ok");
          break;
        case "QUIT":
          socket.end("221 2.0.0 bye\r\n");
          break;
        default:
          reply("502 5.5.2 command not implemented");
      }
    };

    socket.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8");
      for (let i = buffered.indexOf("\r\n"); i >= 0; i = buffered.indexOf("\r\n")) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 2);
        onLine(line);
      }
    });
    reply("220 test.local ESMTP test server");
  });

  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");

  return {
    url: `smtp://127.0.0.1:${address.port}`,
    messages,
    connections: () => connections,
    async close() {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, "close");
    },
  };
}

function parseMail(from: string, to: string[], lines: string[]): ReceivedMail {
  const headers: Record<string, string> = {};
  let last: string | undefined;
  for (const line of lines) {
    if (line === "") break; // end of the header block
    if (/^[ \t]/.test(line) && last !== undefined) {
      headers[last] += ` ${line.trim()}`; // folded continuation
      continue;
    }
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    last = line.slice(0, colon).toLowerCase();
    headers[last] = line.slice(colon + 1).trim();
  }
  return { from, to, headers, data: lines.join("\r\n") };
}
