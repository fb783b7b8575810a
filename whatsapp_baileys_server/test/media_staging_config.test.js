// NODE_MEDIA_STAGING: media bytes go through the gateway unless a directory is asked for.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../src/config.js";

const BASE = { NODE_API_TOKEN: "api", GATEWAY_TOKEN: "gw", GATEWAY_WS_URL: "ws://127.0.0.1:8090/ws" };

test("media is staged through the gateway by default, on the WebSocket's host", () => {
  const config = loadConfig(BASE);
  assert.equal(config.mediaStaging, "gateway");
  assert.equal(config.gatewayHttpUrl, "http://127.0.0.1:8090");
  assert.equal(loadConfig({ ...BASE, NODE_MEDIA_STAGING: "directory" }).mediaStaging, "directory");
});

test("an unknown staging mode stops the start with the variable named", () => {
  assert.throws(() => loadConfig({ ...BASE, NODE_MEDIA_STAGING: "s3" }), (err) => err instanceof ConfigError && /NODE_MEDIA_STAGING="s3"/.test(err.message));
});
