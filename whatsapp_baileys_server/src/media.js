// Staging work for one media message: the quota check, the bounded download streamed
// into a stager (stagers.js: the gateway's MediaStore, or a directory), hash
// verification before the bytes are committed. Nothing here knows about Baileys
// sockets; the download and re-upload functions are passed in.

import { createHash, randomUUID } from "node:crypto";
import { lstat, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { DirectoryStager, QuotaExceededError, StagingRefusedError, StagingUnavailableError } from "./stagers.js";

export { QuotaExceededError } from "./stagers.js";

/** Attempts (download and upload again, same id) when the stager is unavailable. */
const STAGING_ATTEMPTS = 3;
const STAGING_RETRY_MS = 500;

/** HTTP statuses of an expired or withdrawn media URL; one re-upload request may fix them. */
export const REUPLOAD_STATUSES = Object.freeze([403, 404, 410]);

export class MediaError extends Error {
  /** @param {string} reason goes into the corrupt-media frame */
  constructor(reason, { status } = {}) {
    super(reason);
    this.name = "MediaError";
    this.reason = reason;
    this.status = status;
  }
}

/** The bytes themselves are unusable (empty, wrong hash): no retry or re-upload helps. */
class ContentError extends MediaError {}

export class TimeoutError extends Error {
  constructor(what, ms) {
    super(`${what} timed out after ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/**
 * Resolves like `promise`, or rejects with TimeoutError after `ms`; `onTimeout` lets the
 * caller cancel the abandoned work.
 */
export function withTimeout(promise, ms, what, onTimeout = () => {}) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new TimeoutError(what, ms));
    }, ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** The HTTP status carried by a download error (Boom, fetch-style or plain). */
export function httpStatusOf(err) {
  const status = err?.output?.statusCode ?? err?.status ?? err?.statusCode ?? err?.data?.statusCode;
  return typeof status === "number" ? status : undefined;
}

/**
 * Deletes `<uuid4>.part` files older than `olderThanMs`: downloads cut off by a crash.
 * Younger ones may belong to another Node instance sharing the volume and are left.
 */
export async function removeStalePartials(stagingDir, olderThanMs, now = Date.now()) {
  const removed = [];
  for (const name of await readdir(stagingDir)) {
    if (!/^[0-9a-f-]{36}\.part$/.test(name)) continue;
    const path = join(stagingDir, name);
    try {
      if (now - (await lstat(path)).mtimeMs > olderThanMs) {
        await rm(path, { force: true });
        removed.push(name);
      }
    } catch (err) {
      if (err.code !== "ENOENT") throw err;
    }
  }
  return removed;
}

/** Total bytes of regular files under `dir` (recursively); what `du` would measure. */
export async function directorySize(dir) {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      total += await directorySize(path);
    } else if (entry.isFile()) {
      try {
        total += (await lstat(path)).size;
      } catch (err) {
        // Consumers delete staged files at any time; a vanished file weighs nothing.
        if (err.code !== "ENOENT") throw err;
      }
    }
  }
  return total;
}

/**
 * Bytes used in the staging directory, or undefined when they could not be measured in
 * time. A slow or failing measurement must not stop media from flowing, so the check
 * fails open and says so in the log.
 */
export async function measureStaging({ stagingDir, sizeOf = directorySize, timeoutMs, logger, context = {} }) {
  try {
    return await withTimeout(Promise.resolve().then(() => sizeOf(stagingDir)), timeoutMs, "staging size check");
  } catch (err) {
    logger.warn({ ...context, err, stagingDir, timeoutMs }, "quota check failed open: staging size unknown, download allowed");
    return undefined;
  }
}

function toReadable(source) {
  if (source instanceof Readable) return source;
  if (source && typeof source.getReader === "function") return Readable.fromWeb(source);
  if (source instanceof Uint8Array) return Readable.from([source]);
  if (source && (Symbol.asyncIterator in source || Symbol.iterator in source)) return Readable.from(source);
  throw new MediaError("download failed: downloader returned no stream");
}

/**
 * Streams one download attempt into the stager under a byte cap, a hash check and a
 * wall-clock deadline, and commits it. Resolves with { size, path? } once the bytes
 * are durable; a failed attempt leaves nothing staged.
 */
async function downloadOnce({ download, message, stager, botId, mediaProcessingId, maxBytes, timeoutMs, expected }) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new TimeoutError("download", timeoutMs)), timeoutMs);
  const started = Promise.resolve().then(() => download(message));
  let upload;
  try {
    const source = await Promise.race([
      started,
      new Promise((_, reject) => {
        controller.signal.addEventListener("abort", () => reject(controller.signal.reason), { once: true });
      }),
    ]);
    const readable = toReadable(source);
    const hash = createHash("sha256");
    let size = 0;
    const meter = new Transform({
      transform(chunk, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) {
          done(new MediaError(`media larger than the ${maxBytes} bytes allowed`));
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
      // Checked before the stager's stream is ended, so bytes that fail it are never
      // committed (an unfinished upload or part file is discarded).
      flush(done) {
        if (size === 0) return done(new ContentError("download failed: no bytes received"));
        if (expected && !expected.equals(hash.digest())) {
          return done(new ContentError("hash mismatch: downloaded bytes do not match fileSha256"));
        }
        done();
      },
    });
    upload = stager.open({ botId, mediaProcessingId, maxBytes });
    await pipeline(readable, meter, upload.stream, { signal: controller.signal });
    const committed = await upload.finish();
    upload = undefined;
    return { ...committed, size };
  } catch (err) {
    // A stream that arrives after the deadline would otherwise hold its connection open.
    started.then((late) => late?.destroy?.(), () => {});
    const refused = upload?.refused?.();
    await upload?.abort();
    if (refused) throw refused;
    if (controller.signal.aborted && controller.signal.reason instanceof TimeoutError) {
      throw controller.signal.reason;
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function describe(err) {
  if (err instanceof MediaError || err instanceof TimeoutError) return err.message;
  const status = httpStatusOf(err);
  if (status !== undefined) return `HTTP ${status}`;
  return err?.message ? String(err.message) : String(err);
}

function expectedHash(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value.length ? Buffer.from(value, "base64") : undefined;
  if (value instanceof Uint8Array) return value.length ? Buffer.from(value) : undefined;
  return undefined;
}

/**
 * Downloads one media message into the stager under a fresh UUID4, atomically.
 * Throws QuotaExceededError when the bot is over its quota, MediaError with a reason
 * (for the corrupt-media frame) for anything else; leaves nothing staged either way.
 *
 * @param {object} args
 * @param {any} args.message the WAMessage (re-upload may replace it)
 * @param {string} args.botId
 * @param {any} [args.stager] stagers.js; a DirectoryStager on `stagingDir` when absent
 * @param {(message: any) => Promise<any>} args.download returns a byte stream
 * @param {((message: any) => Promise<any>) | undefined} args.reupload asks the sender's
 *   phone to upload expired media again; returns the message with fresh URLs
 * @param {Uint8Array | string | undefined} args.fileSha256 hash of the plaintext
 * @param {number | undefined} args.quotaBytes the bot's quota, if it has one
 * @returns {Promise<{ mediaProcessingId: string, path?: string, size: number }>}
 */
export async function stageMedia({
  message,
  botId = "",
  stager,
  stagingDir,
  download,
  reupload,
  fileSha256,
  quotaBytes,
  maxBytes,
  downloadTimeoutMs,
  reuploadTimeoutMs,
  retryMs = STAGING_RETRY_MS,
  logger,
  context = {},
}) {
  stager ??= new DirectoryStager({ stagingDir, measure: async () => undefined });
  const mediaProcessingId = randomUUID();
  const log = logger.child({ ...context, media_processing_id: mediaProcessingId });
  await stager.checkQuota({ botId, quotaBytes, log });
  const expected = expectedHash(fileSha256);
  const once = (msg) => downloadOnce({
    download, message: msg, stager, botId, mediaProcessingId, maxBytes, timeoutMs: downloadTimeoutMs, expected,
  });
  // Same id on every attempt: the gateway replaces what an earlier attempt stored and
  // counts the bytes once.
  const attempt = async (msg) => {
    for (let n = 1; ; n += 1) {
      try {
        return await once(msg);
      } catch (err) {
        if (!(err instanceof StagingUnavailableError) || n >= STAGING_ATTEMPTS) throw err;
        log.warn({ err, attempt: n }, "staging unavailable; downloading and staging again");
        await sleep(retryMs * n);
      }
    }
  };
  try {
    let result;
    try {
      result = await attempt(message);
    } catch (err) {
      if (err instanceof QuotaExceededError || err instanceof ContentError) throw err;
      const status = httpStatusOf(err);
      if (status === undefined || !REUPLOAD_STATUSES.includes(status) || !reupload) {
        if (err instanceof StagingRefusedError) throw new MediaError(err.message);
        throw new MediaError(`download failed: ${describe(err)}`, { status });
      }
      log.info({ status }, "media URL expired; requesting re-upload");
      let refreshed;
      try {
        refreshed = await withTimeout(Promise.resolve().then(() => reupload(message)), reuploadTimeoutMs, "re-upload request");
      } catch (reuploadErr) {
        throw new MediaError(`download failed: HTTP ${status}; re-upload failed: ${describe(reuploadErr)}`, { status });
      }
      try {
        result = await attempt(refreshed ?? message);
      } catch (retryErr) {
        if (retryErr instanceof QuotaExceededError || retryErr instanceof ContentError) throw retryErr;
        throw new MediaError(`download failed: ${describe(retryErr)} after re-upload`, { status: httpStatusOf(retryErr) });
      }
    }
    log.debug({ size: result.size }, "media staged");
    return { mediaProcessingId, ...result };
  } catch (err) {
    if (err instanceof MediaError || err instanceof QuotaExceededError) throw err;
    if (err instanceof StagingRefusedError) throw new MediaError(err.message);
    throw new MediaError(`download failed: ${describe(err)}`, { status: httpStatusOf(err) });
  }
}
