// Courier's official TypeScript SDK (npm @trycourier/courier) against profiled.
//
// Run by sdk_ts_test.sh with node, the api and the worker already up:
//   E2E_SDK_DIR   the folder where npm installed the SDK (node_modules inside)
//   E2E_BASE_URL  the api, e.g. http://127.0.0.1:8123
//   E2E_KEY       a key the api accepts
//   E2E_RUN       a unique run id, put in every recipient id
//   E2E_IDS_FILE  where to write the recipient ids used (one JSON string a line)
//
// The SDK is used as a Courier customer would: new Courier({ apiKey, baseURL }) and its
// profiles.replace / profiles.retrieve calls, nothing patched. A retrieve right after a
// replace must return it, without polling (the api's default PROFILED_PUT_ACK=applied).
// Every case runs even when an earlier one failed; the last line is "N passed, N failed".
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const SDK_DIR = env('E2E_SDK_DIR');
const BASE_URL = env('E2E_BASE_URL');
const KEY = env('E2E_KEY');
const RUN = env('E2E_RUN');
const IDS_FILE = env('E2E_IDS_FILE');

const require = createRequire(path.join(SDK_DIR, 'package.json'));
const sdk = require('@trycourier/courier');
const Courier = sdk.default;
const { APIError, NotFoundError, AuthenticationError, BadRequestError } = sdk;
const sdkVersion = JSON.parse(
  readFileSync(path.join(SDK_DIR, 'node_modules', '@trycourier', 'courier', 'package.json'), 'utf8')).version;

// No retries behind the test's back: a retry would hide a 5xx.
const client = new Courier({ apiKey: KEY, baseURL: BASE_URL, maxRetries: 0, timeout: 20000 });
const idsUsed = [];
const rid = (name) => {
  const value = `e2e-ts-${RUN}-${name}`;
  idsUsed.push(value);
  return value;
};
// One retrieve, right after the replace: read-your-writes (the api answers a replace once the
// worker applied it, README "Read your writes"), so no polling. Returns the response.
async function retrieveNow(recipientId, expected) {
  let got;
  try {
    got = await client.profiles.retrieve(recipientId);
  } catch (e) {
    if (e instanceof NotFoundError) {
      throw new Error(`retrieve(${JSON.stringify(recipientId)}) right after replace: 404 not found`);
    }
    throw e;
  }
  try {
    assert.deepStrictEqual(got.profile, expected);
  } catch (e) {
    throw new Error(`retrieve(${JSON.stringify(recipientId)}) right after replace: a different profile: ` +
                    JSON.stringify(got.profile));
  }
  return got;
}

// JavaScript numbers are doubles: integers are exact up to 2^53.
const RICH_PROFILE = {
  email: 'ada@example.com',
  email_verified: true,
  phone_number: '+15555550123',
  name: 'Zoë Ünïcödé 日本語 🙂 "quoted" \\ back\tslash\n',
  locale: 'en-GB',
  address: { formatted: "12 St James's Square, London", locality: 'London', postal_code: 'SW1Y 4JH', country: 'GB' },
  custom: {
    ints: [0, 1, -1, 127, 128, -33, 65536, 2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER],
    floats: [0.1, 0.875, -2.5, 1e-7, 123456.789, 5e-324, 1.7976931348623157e308, 1e21, 2.5e-10],
    nested: { a: { b: { c: { d: [{ e: null, f: false }, [], {}] } } } },
    'emoji_key_🙂': 'value',
    empty_string: '',
  },
};

async function expectError(promise, ErrorClass, status, type) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof ErrorClass, `expected ${ErrorClass.name}, got ${e?.constructor?.name}: ${e}`);
    assert.equal(e.status, status);
    assert.equal(e.error?.type, type, `error body: ${JSON.stringify(e.error)}`);
    return e;
  }
  throw new Error(`expected ${ErrorClass.name}, but the call succeeded`);
}

const cases = {
  async replaceAndRetrieve() {
    const r = rid('rich');
    const result = await client.profiles.replace(r, { profile: RICH_PROFILE });
    assert.deepStrictEqual(result, { status: 'SUCCESS' });
    const got = await retrieveNow(r, RICH_PROFILE);
    assert.equal(got.preferences, null);
  },

  async replaceExposesPositionHeaders() {
    const r = rid('raw');
    const { data, response } = await client.profiles.replace(r, { profile: { email: 'raw@example.com' } })
      .withResponse();
    assert.equal(response.status, 200);
    assert.deepStrictEqual(data, { status: 'SUCCESS' });
    for (const name of ['x-command-id', 'x-kafka-partition', 'x-kafka-offset']) {
      assert.ok(response.headers.get(name), `response header ${name} missing`);
    }
    await retrieveNow(r, { email: 'raw@example.com' });
  },

  async replaceWithEmptyClears() {
    const r = rid('clear');
    await client.profiles.replace(r, { profile: { email: 'clear@example.com', custom: { x: 1 } } });
    await retrieveNow(r, { email: 'clear@example.com', custom: { x: 1 } });
    assert.deepStrictEqual(await client.profiles.replace(r, { profile: {} }), { status: 'SUCCESS' });
    await retrieveNow(r, {});
  },

  async replaceReplacesWholeProfile() {
    const r = rid('whole');
    await client.profiles.replace(r, { profile: { email: 'a@example.com', name: 'A', custom: { keep: 'no' } } });
    await retrieveNow(r, { email: 'a@example.com', name: 'A', custom: { keep: 'no' } });
    await client.profiles.replace(r, { profile: { phone_number: '+15555550100' } });
    await retrieveNow(r, { phone_number: '+15555550100' });
  },

  async unknownIdIsNotFound() {
    await expectError(client.profiles.retrieve(`e2e-ts-${RUN}-never-written`), NotFoundError, 404,
                      'invalid_request_error');
  },

  async wrongKeyIsAuthenticationError() {
    const bad = new Courier({ apiKey: `not-${KEY}`, baseURL: BASE_URL, maxRetries: 0, timeout: 20000 });
    await expectError(bad.profiles.replace(`e2e-ts-${RUN}-bad-key`, { profile: { email: 'x@example.com' } }),
                      AuthenticationError, 401, 'authentication_error');
    await expectError(bad.profiles.retrieve(`e2e-ts-${RUN}-bad-key`), AuthenticationError, 401,
                      'authentication_error');
  },

  async invalidProfileIsBadRequest() {
    const table = [
      [{ email: 42 }, 'email'],
      [{ email_verified: 'yes' }, 'email_verified'],
      [{ address: { locality: 7 } }, 'address'],
    ];
    for (const [profile, field] of table) {
      const e = await expectError(client.profiles.replace(`e2e-ts-${RUN}-invalid`, { profile }), BadRequestError,
                                  400, 'invalid_request_error');
      assert.ok(e.error.message.includes(field), `the message does not name ${field}: ${e.error.message}`);
      assert.ok(e.message.includes(field), `the SDK's error text does not name ${field}: ${e.message}`);
    }
  },

  async awkwardRecipientIdsRoundTrip() {
    // The SDK percent-encodes the id as one path segment (keeping RFC 3986 sub-delims
    // such as + , ; = @ : as they are); the api must decode it back to exactly these bytes.
    const names = [
      'slash/inside/id',
      'space inside id',
      'unicode Zoë ünïcödé 日本 🙂',
      'plus+sign@example.com',
      'percent%41literal?query#frag',
      "sub-delims!$&'()*,;=:@",
    ];
    for (const name of names) {
      const r = rid(name);
      const profile = { custom: { id: r } };
      assert.deepStrictEqual(await client.profiles.replace(r, { profile }), { status: 'SUCCESS' });
      await retrieveNow(r, profile);
    }
  },

  async defaultClientSettings() {
    // Exactly what a customer writes: only the key and the base URL, SDK defaults otherwise.
    const plain = new Courier({ apiKey: KEY, baseURL: BASE_URL });
    const r = rid('defaults');
    assert.deepStrictEqual(await plain.profiles.replace(r, { profile: { email: 'd@example.com' } }),
                           { status: 'SUCCESS' });
    await retrieveNow(r, { email: 'd@example.com' });
  },

  async bodyOverLimitIs413() {
    await expectError(client.profiles.replace(`e2e-ts-${RUN}-too-big`, { profile: { custom: { s: 'x'.repeat(300000) } } }),
                      APIError, 413, 'invalid_request_error');
  },

  async unsupportedCallsFailClearly() {
    // profiled implements PUT and GET only (DESIGN §3): the SDK's POST (merge), PATCH and
    // DELETE calls must fail with a clear 405, not be taken for something else.
    const r = `e2e-ts-${RUN}-unsupported`;
    const calls = {
      'create (POST)': () => client.profiles.create(r, { profile: { email: 'x@example.com' } }),
      'update (PATCH)': () => client.profiles.update(r, { patch: [{ op: 'add', path: '/a', value: '1' }] }),
      'delete (DELETE)': () => client.profiles.delete(r),
    };
    for (const [name, call] of Object.entries(calls)) {
      const e = await expectError(call(), APIError, 405, 'invalid_request_error');
      assert.equal(e.headers.get('allow'), 'GET, HEAD, PUT', `${name}: Allow header`);
      assert.ok(e.error.message.includes('not allowed'), `${name}: ${e.error.message}`);
    }
    await expectError(client.profiles.retrieve(r), NotFoundError, 404, 'invalid_request_error');
  },
};

console.log(`@trycourier/courier ${sdkVersion} on node ${process.version} against ${BASE_URL}`);
let passed = 0;
let failed = 0;
for (const [name, fn] of Object.entries(cases)) {
  const t0 = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(2)}s)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
}
writeFileSync(IDS_FILE, idsUsed.map((v) => JSON.stringify(v) + '\n').join(''));
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed ? 1 : 0;
