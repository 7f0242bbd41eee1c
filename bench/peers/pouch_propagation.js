// Propagation, the peer of the delivery latency in
// tests/benches/replication.rs: a local PouchDB live-replicates from
// pouchdb-server (`live: true`, long-polled changes feed); BENCH_SAMPLES
// times (default 1,000), one after another, we write a document at the
// server over HTTP and time from just before that request until the local
// replication reports the document written locally (p50, p99, and every
// sample for the plot). Prints a table and a BENCH_JSON line.
'use strict';

const path = require('path');
const PouchDB = require('pouchdb');
const { nowMs, percentile, envInt, tempDir, emit, booking } = require('./common');
const { startServer } = require('./server');

const SAMPLES = envInt('BENCH_SAMPLES', 1_000);
const WARMUP = 20;
/** How long one document may take to arrive before the bench gives up. */
const DELIVERY_LIMIT_MS = 10_000;

async function main() {
  const dir = tempDir('pouch-prop-');
  const server = await startServer();
  const remote = new PouchDB(`${server.url}/propagation`);
  await remote.info();
  const local = new PouchDB(path.join(dir, 'local'));
  const waiting = new Map();
  const replication = local.replicate.from(remote, { live: true, retry: true });
  replication.on('change', (info) => {
    for (const doc of info.docs) {
      const resolve = waiting.get(doc._id);
      if (resolve) {
        waiting.delete(doc._id);
        resolve(nowMs());
      }
    }
  });
  const one = async (id, n) => {
    const arrived = new Promise((resolve, reject) => {
      waiting.set(id, resolve);
      setTimeout(() => reject(new Error(`${id} not delivered`)), DELIVERY_LIMIT_MS).unref();
    });
    const t = nowMs();
    await remote.put(booking(id, n));
    return (await arrived) - t;
  };
  for (let n = 0; n < WARMUP; n++) await one(`warm${n}`, n);
  const latencies = [];
  for (let n = 0; n < SAMPLES; n++) latencies.push(await one(`s${n}`, n));
  replication.cancel();
  latencies.sort((a, b) => a - b);
  const p50 = percentile(latencies, 0.5);
  const p99 = percentile(latencies, 0.99);
  console.log(`\nPouchDB live replication pouchdb-server -> local over loopback, sync=${process.env.LEVEL_SYNC === '1'}:\n`);
  console.log('| measurement | figure |');
  console.log('|---|---|');
  console.log(`| server write to local applied, ${latencies.length} samples | p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms |`);
  emit({
    bench: 'pouchdb_propagation',
    sync: process.env.LEVEL_SYNC === '1',
    samples: latencies.length,
    delivery_p50_ms: p50,
    delivery_p99_ms: p99,
    delivery_samples_ms: latencies,
  });
  // Exit at once: the exit handlers stop the server and remove the
  // directories, and a live feed's last request is not waited for.
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
