// Where the bytes of an incoming media message go: a small interface the handler is
// given. The gateway stager (the default) streams them to the gateway, which writes them
// to the platform's MediaStore (a directory or GridFS) and accounts them against the
// bot's quota in the store; the directory stager writes <staging>/<uuid4> itself (the
// handler tests, and development without a gateway). Either way the frame naming the
// bytes leaves only after `finish()` says they are durable.
//
// A stager has:
//   checkQuota({ botId, quotaBytes, log }): throws QuotaExceededError when the bot may
//     not stage more (the gateway stager leaves this to the gateway, which answers 507);
//   open({ botId, mediaProcessingId, maxBytes }) → { stream, finish, abort }: `stream`
//     is the Writable the download is piped into; `finish()` resolves once the bytes are
//     durable (throws MediaError, QuotaExceededError or StagingUnavailableError);
//   `abort()` discards whatever was written; `refused()` (optional) is the refusal that
//   cut the stream off, if that is why it failed.

import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { join } from "node:path";

export class QuotaExceededError extends Error {
  constructor(usedBytes, quotaBytes) {
    super(`media quota exceeded: ${usedBytes} of ${quotaBytes} bytes staged`);
    this.name = "QuotaExceededError";
    this.usedBytes = usedBytes;
    this.quotaBytes = quotaBytes;
  }
}

/** The stager could not store the bytes now (gateway down, 5xx): worth another attempt. */
export class StagingUnavailableError extends Error {
  constructor(message) {
    super(message);
    this.name = "StagingUnavailableError";
  }
}

/** What a refused upload means for the message: the caller maps it to a frame. */
export class StagingRefusedError extends Error {
  constructor(message) {
    super(message);
    this.name = "StagingRefusedError";
  }
}

/** The gateway's status for a bot over its media quota (services/gateway/media_staging_api.py). */
export const QUOTA_EXCEEDED_STATUS = 507;
const MAX_ANSWER_BYTES = 64 * 1024;

export class DirectoryStager {
  /**
   * @param {{ stagingDir: string, measure: (log: any) => Promise<number | undefined> }} options
   *   `measure` returns the bytes used in the directory, undefined when unknown (fails open)
   */
  constructor({ stagingDir, measure }) {
    Object.assign(this, { stagingDir, measure });
  }

  async checkQuota({ quotaBytes, log }) {
    if (quotaBytes === undefined) return;
    const used = await this.measure(log);
    if (used !== undefined && used >= quotaBytes) throw new QuotaExceededError(used, quotaBytes);
  }

  open({ mediaProcessingId }) {
    const partPath = join(this.stagingDir, `${mediaProcessingId}.part`);
    const finalPath = join(this.stagingDir, mediaProcessingId);
    // flush: the file is fsynced before the frame naming it can leave this process.
    const stream = createWriteStream(partPath, { flags: "wx", flush: true });
    return {
      stream,
      finish: async () => {
        await rename(partPath, finalPath);
        return { path: finalPath };
      },
      abort: async () => {
        // A stream destroyed before its open() completed still creates the file when the
        // open lands; removing it before 'close' would leave a stray .part behind.
        if (!stream.closed) {
          const closed = new Promise((resolve) => stream.once("close", resolve));
          stream.destroy();
          await closed;
        }
        await rm(partPath, { force: true });
      },
    };
  }
}

export class GatewayStager {
  /** @param {{ baseUrl: string, token: string }} options the gateway's HTTP address and Node's GATEWAY_TOKEN */
  constructor({ baseUrl, token }) {
    Object.assign(this, { baseUrl: baseUrl.replace(/\/$/, ""), token });
  }

  /** The gateway checks the quota against the bot's counter in the store. */
  async checkQuota() {}

  open({ botId, mediaProcessingId }) {
    const url = new URL(`${this.baseUrl}/internal/media/${encodeURIComponent(botId)}/${mediaProcessingId}`);
    const transport = url.protocol === "https:" ? https : http;
    // No Content-Length: the body is sent chunked as it is downloaded. A body that ends
    // without its last chunk (this process dies, the download fails) stores nothing.
    const request = transport.request(url, {
      method: "PUT",
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/octet-stream" },
    });
    const answer = new Promise((resolve, reject) => {
      request.once("response", (response) => {
        const parts = [];
        let size = 0;
        response.on("data", (part) => {
          size += part.length;
          if (size <= MAX_ANSWER_BYTES) parts.push(part);
        });
        response.once("end", () => resolve({ status: response.statusCode, text: Buffer.concat(parts).toString("utf8") }));
        response.once("error", reject);
      });
      request.once("error", reject);
    });
    // A refusal can arrive before the whole body is sent (quota, size): it stops the
    // download at once with the refusal as the reason.
    let refused;
    answer.then(({ status, text }) => {
      if (status === 201) return;
      refused = refusal(status, text);
      request.destroy(refused);
    }, () => {});
    return {
      stream: request,
      refused: () => refused,
      finish: async () => {
        let result;
        try {
          result = await answer;
        } catch (err) {
          throw new StagingUnavailableError(`cannot stage media through the gateway (${url.origin}): ${err?.message ?? err}`);
        }
        if (result.status !== 201) throw refusal(result.status, result.text);
        return { size: JSON.parse(result.text).size };
      },
      abort: async () => {
        request.destroy();
        await answer.catch(() => undefined);
      },
    };
  }
}

function refusal(status, text) {
  let body = {};
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the status says enough
  }
  if (status === QUOTA_EXCEEDED_STATUS) return new QuotaExceededError(Number(body.used_bytes ?? 0), Number(body.quota_bytes ?? 0));
  const reason = typeof body.error === "string" ? body.error : `HTTP ${status}`;
  if (status === 413 || status === 400) return new StagingRefusedError(reason);
  return new StagingUnavailableError(`the gateway could not stage the media: HTTP ${status} ${reason}`);
}
