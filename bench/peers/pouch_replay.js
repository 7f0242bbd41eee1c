// Replay, the peer of the replay in tests/benches/replication.rs: a local
// PouchDB (LevelDB) holds BENCH_EVENTS booking-sized documents (default
// 100,000) written while no server is there; then pouchdb-server starts
// and we time one replication local -> server from its start to
// `complete` (PouchDB's default batch size). With LEVEL_SYNC=1 both sides
// make synchronous LevelDB writes. Prints a table and a BENCH_JSON line.
'use strict';

const path = require('path');
const PouchDB = require('pouchdb');
const { nowMs, envInt, tempDir, emit, booking } = require('./common');
const { startServer } = require('./server');

const EVENTS = envInt('BENCH_EVENTS', 100_000);
/** Documents per bulkDocs call while filling (not timed). */
const FILL_BATCH = 1_000;

async function main() {
  const dir = tempDir('pouch-replay-');
  const local = new PouchDB(path.join(dir, 'local'));
  const filled = nowMs();
  for (let n = 0; n < EVENTS; n += FILL_BATCH) {
    const docs = [];
    for (let i = n; i < Math.min(EVENTS, n + FILL_BATCH); i++) docs.push(booking(`b${String(i).padStart(9, '0')}`, i));
    await local.bulkDocs(docs);
  }
  console.error(`local PouchDB took ${EVENTS} documents in ${((nowMs() - filled) / 1000).toFixed(1)} s with no server`);

  const started = nowMs();
  const server = await startServer();
  const serverUp = nowMs() - started;
  const remote = `${server.url}/replay`;
  const replicating = nowMs();
  const result = await local.replicate.to(remote);
  const took = (nowMs() - replicating) / 1000;
  const info = await new PouchDB(remote).info();
  if (info.doc_count < EVENTS) throw new Error(`server holds ${info.doc_count} of ${EVENTS}`);
  const rate = EVENTS / took;
  console.log(`\nPouchDB replication local -> pouchdb-server over loopback, sync=${process.env.LEVEL_SYNC === '1'}:\n`);
  console.log('| measurement | figure |');
  console.log('|---|---|');
  console.log(`| documents replicated | ${result.docs_written} |`);
  console.log(`| pouchdb-server start to answering | ${serverUp.toFixed(0)} ms |`);
  console.log(`| replication start to complete | ${took.toFixed(2)} s |`);
  console.log(`| replay throughput | ${rate.toFixed(0)} docs/s |`);
  emit({
    bench: 'pouchdb_replay',
    sync: process.env.LEVEL_SYNC === '1',
    events: EVENTS,
    docs_written: result.docs_written,
    server_up_ms: serverUp,
    replay_seconds: took,
    replay_docs_per_second: rate,
  });
  // Exit at once: the exit handlers stop the server and remove the
  // directories, and a live feed's last request is not waited for.
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
