// Staging-volume work for one media message: the quota check, the bounded download to
// <staging>/<uuid4>.part, hash verification and the final rename. Nothing here knows
// about Baileys sockets; the download and re-upload functions are passed in.

import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { lstat, readdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

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
 * Streams one download attempt to `partPath` under a byte cap and a wall-clock deadline.
 * Resolves with { size, sha256 } of the bytes written.
 */
async function downloadOnce({ download, message, partPath, maxBytes, timeoutMs }) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new TimeoutError("download", timeoutMs)), timeoutMs);
  const started = Promise.resolve().then(() => download(message));
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
    });
    // flush: the file is fsynced before the frame naming it can leave this process.
    await pipeline(readable, meter, createWriteStream(partPath, { flags: "wx", flush: true }), {
      signal: controller.signal,
    });
    return { size, sha256: hash.digest() };
  } catch (err) {
    // A stream that arrives after the deadline would otherwise hold its connection open.
    started.then((late) => late?.destroy?.(), () => {});
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
 * Downloads one media message into the staging directory as <uuid4>, atomically.
 * Any failure throws MediaError with a reason and leaves no file behind.
 *
 * @param {object} args
 * @param {any} args.message the WAMessage (re-upload may replace it)
 * @param {(message: any) => Promise<any>} args.download returns a byte stream
 * @param {((message: any) => Promise<any>) | undefined} args.reupload asks the sender's
 *   phone to upload expired media again; returns the message with fresh URLs
 * @param {Uint8Array | string | undefined} args.fileSha256 hash of the plaintext
 * @returns {Promise<{ mediaProcessingId: string, path: string, size: number }>}
 */
export async function stageMedia({
  message,
  stagingDir,
  download,
  reupload,
  fileSha256,
  maxBytes,
  downloadTimeoutMs,
  reuploadTimeoutMs,
  logger,
  context = {},
}) {
  const mediaProcessingId = randomUUID();
  const partPath = join(stagingDir, `${mediaProcessingId}.part`);
  const finalPath = join(stagingDir, mediaProcessingId);
  const log = logger.child({ ...context, media_processing_id: mediaProcessingId });
  const attempt = (msg) => downloadOnce({ download, message: msg, partPath, maxBytes, timeoutMs: downloadTimeoutMs });
  try {
    let result;
    try {
      result = await attempt(message);
    } catch (err) {
      const status = httpStatusOf(err);
      if (status === undefined || !REUPLOAD_STATUSES.includes(status) || !reupload) {
        throw new MediaError(`download failed: ${describe(err)}`, { status });
      }
      log.info({ status }, "media URL expired; requesting re-upload");
      await rm(partPath, { force: true });
      let refreshed;
      try {
        refreshed = await withTimeout(Promise.resolve().then(() => reupload(message)), reuploadTimeoutMs, "re-upload request");
      } catch (reuploadErr) {
        throw new MediaError(`download failed: HTTP ${status}; re-upload failed: ${describe(reuploadErr)}`, { status });
      }
      try {
        result = await attempt(refreshed ?? message);
      } catch (retryErr) {
        throw new MediaError(`download failed: ${describe(retryErr)} after re-upload`, { status: httpStatusOf(retryErr) });
      }
    }
    if (result.size === 0) throw new MediaError("download failed: no bytes received");
    const expected = expectedHash(fileSha256);
    if (expected && !expected.equals(result.sha256)) {
      throw new MediaError("hash mismatch: downloaded bytes do not match fileSha256");
    }
    await rename(partPath, finalPath);
    log.debug({ size: result.size }, "media staged");
    return { mediaProcessingId, path: finalPath, size: result.size };
  } catch (err) {
    await rm(partPath, { force: true }).catch((rmErr) => log.error({ err: rmErr }, "could not delete partial download"));
    if (err instanceof MediaError) throw err;
    throw new MediaError(`download failed: ${describe(err)}`);
  }
}
