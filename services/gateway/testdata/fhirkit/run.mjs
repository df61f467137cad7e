// Drives Tandem's gateway with fhir-kit-client: WRITERS concurrent loops,
// each creating Patients with an Idempotency-Key (retrying the same key
// until it is acknowledged) and reading each one back, for DURATION_MS.
// One JSON line per acknowledged create on stdout; a summary line at the end.
// Run by cmd/tandem TestGatewayFHIRKitClient; NODE_EXTRA_CA_CERTS names the
// cluster's CA.
import { Client } from 'fhir-kit-client';

const baseUrl = process.env.GATEWAY_URL;
const writers = Number(process.env.WRITERS || 4);
const durationMs = Number(process.env.DURATION_MS || 5000);
const prefix = process.env.PREFIX || 'fk';
const perWriteLimitMs = 60000;

const client = new Client({ baseUrl, bearerToken: process.env.BEARER_TOKEN });
const t0 = Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let clientRetries = 0;
let readFailures = 0;
let acked = 0;

async function writer(w) {
  for (let i = 0; Date.now() - t0 < durationMs; i++) {
    const key = `${prefix}-w${w}-${i}`;
    const body = { resourceType: 'Patient', identifier: [{ system: 'urn:tandem-test', value: key }], active: true };
    const start = Date.now(); // wall clock (ms), compared with the test's kill time
    let created;
    let retries = 0;
    for (;;) {
      try {
        created = await client.create({ resourceType: 'Patient', body, options: { headers: { 'Idempotency-Key': key } } });
        break;
      } catch (e) {
        retries++;
        clientRetries++;
        if (Date.now() - start > perWriteLimitMs) {
          console.log(JSON.stringify({ gaveUp: key, error: String(e.message || e) }));
          return;
        }
        await sleep(100);
      }
    }
    const end = Date.now();
    let read = false;
    try {
      const got = await client.read({ resourceType: 'Patient', id: created.id });
      read = got.identifier && got.identifier[0].value === key;
    } catch (e) {
      read = false;
    }
    if (!read) readFailures++;
    acked++;
    console.log(JSON.stringify({ ack: key, id: created.id, start, end, retries, read }));
  }
}

await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
console.log(JSON.stringify({ done: true, acked, clientRetries, readFailures }));
