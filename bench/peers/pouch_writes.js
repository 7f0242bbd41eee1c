// Durable local writes in PouchDB (LevelDB adapter, leveldown), the peer of
// edge-node/benches/commit_throughput.rs: booking-sized documents put one
// at a time (1 writer) and with 64 puts in flight, each writer awaiting its
// put before the next. Run with `node -r ./force_sync.js` and LEVEL_SYNC=1
// so that each put is a synchronous LevelDB write (fdatasync); bench/run
// checks that with strace. Each measurement runs BENCH_SECONDS (default 5)
// after a warm-up, 1 and 64 alternate over BENCH_REPEAT rounds (default 3),
// and the medians are printed as a markdown table and a BENCH_JSON line.
'use strict';

const path = require('path');
const PouchDB = require('pouchdb');
const { nowMs, median, percentile, envInt, tempDir, emit, booking } = require('./common');

const SECONDS = envInt('BENCH_SECONDS', 5);
const WARMUP_SECONDS = envInt('BENCH_WARMUP_SECONDS', 3);
const ROUNDS = envInt('BENCH_REPEAT', 3);
/** Writers in flight, as the edge API is measured with 1 and 64 clients. */
const CLIENTS = [1, 64];

/** Every put this process made, warm-up included, to set against fsyncs counted by strace. */
let putsTotal = 0;

async function measure(db, clients, seconds, tag) {
  const latencies = [];
  const start = nowMs();
  const until = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      let n = 0;
      for (let t = nowMs(); t < until; n++) {
        await db.put(booking(`${tag}-${c}-${n}`, n));
        putsTotal++;
        const done = nowMs();
        latencies.push(done - t);
        t = done;
      }
    }),
  );
  const elapsed = (nowMs() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    per_second: latencies.length / elapsed,
    p50_ms: percentile(latencies, 0.5),
    p99_ms: percentile(latencies, 0.99),
  };
}

async function main() {
  const dir = tempDir('pouch-writes-');
  const db = new PouchDB(path.join(dir, 'writes'));
  await measure(db, 64, WARMUP_SECONDS, 'warm');
  const rounds = Object.fromEntries(CLIENTS.map((c) => [c, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const clients of CLIENTS) {
      const sample = await measure(db, clients, SECONDS, `r${round}c${clients}`);
      rounds[clients].push(sample);
      console.error(`round ${round}: pouchdb x${clients} ${sample.per_second.toFixed(0)}/s`);
    }
  }
  const figures = (samples) => ({
    per_second_rounds: samples.map((s) => s.per_second),
    per_second: median(samples.map((s) => s.per_second)),
    p50_ms: median(samples.map((s) => s.p50_ms)),
    p99_ms: median(samples.map((s) => s.p99_ms)),
  });
  const out = {
    bench: 'pouchdb_writes',
    rounds: ROUNDS,
    seconds: SECONDS,
    sync: process.env.LEVEL_SYNC === '1',
    pouch_1: figures(rounds[1]),
    pouch_64: figures(rounds[64]),
    puts_total: putsTotal,
  };
  console.log(`\nPouchDB (LevelDB) puts, medians of ${ROUNDS} rounds of ${SECONDS}s, sync=${out.sync}:\n`);
  console.log('| measurement | writes per second | p50 ms | p99 ms |');
  console.log('|---|---|---|---|');
  for (const c of CLIENTS) {
    const f = out[`pouch_${c}`];
    console.log(`| PouchDB put, ${c} in flight | ${f.per_second.toFixed(0)} | ${f.p50_ms.toFixed(3)} | ${f.p99_ms.toFixed(3)} |`);
  }
  await db.close();
  emit(out);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
