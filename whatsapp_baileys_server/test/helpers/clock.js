// Now-relative times for tests: every timestamp a test sends is derived from the current
// clock, so no test goes stale as the calendar moves. The Python guard
// (tests/unit/test_no_calendar_literals.py) refuses literal dates in these files too.

/** Now in whole seconds since the epoch, shifted by `offsetSeconds`. */
export function nowSeconds(offsetSeconds = 0) {
  return Math.floor(Date.now() / 1000) + offsetSeconds;
}

/** The RFC 3339 form of whole seconds since the epoch, as proto3 JSON writes a Timestamp. */
export function isoFromSeconds(seconds) {
  return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
}

/** Now as a Date, shifted by `offsetSeconds`. */
export function dateNow(offsetSeconds = 0) {
  return new Date(Date.now() + offsetSeconds * 1000);
}
