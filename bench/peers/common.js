// Helpers shared by the peer benchmarks: timing, medians, percentiles,
// temporary directories, waiting for a server, and the `BENCH_JSON` line
// that bench/report.py collects (the same one the Rust benches print).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');

/** Milliseconds, monotonic, fractional. */
function nowMs() {
  return Number(process.hrtime.bigint()) / 1e6;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** The p-th quantile of already sorted values, as replication.rs takes it. */
function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.round((sorted.length - 1) * p)];
}

function envInt(name, fallback) {
  const v = parseInt(process.env[name] || '', 10);
  return Number.isFinite(v) ? v : fallback;
}

/** A fresh directory under BENCH_TMP (or the system's), removed at exit. */
function tempDir(prefix) {
  const base = process.env.BENCH_TMP || os.tmpdir();
  fs.mkdirSync(base, { recursive: true });
  const dir = fs.mkdtempSync(path.join(base, prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves once `url` answers any HTTP status, or rejects after `limitMs`. */
async function waitForHttp(url, limitMs) {
  const until = nowMs() + limitMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      http.get(url, (res) => { res.resume(); resolve(true); }).on('error', () => resolve(false));
    });
    if (ok) return;
    if (nowMs() > until) throw new Error(`${url} did not answer within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A free TCP port on loopback. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = require('net').createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function emit(figures) {
  console.log(`BENCH_JSON ${JSON.stringify(figures)}`);
}

/** A booking-sized document, like the rows of commit_throughput.rs. */
function booking(id, n) {
  return {
    _id: id,
    pool_id: 'bench:pool',
    quantity: 1,
    customer_name: `Bench Customer ${n}`,
    customer_phone: '+49 30 1234',
    state: 'confirmed',
    created_at_ms: Date.now(),
  };
}

module.exports = { nowMs, median, percentile, envInt, tempDir, waitForHttp, freePort, emit, booking };
