// Ingest, the peer of tests/benches/ingest.rs: PUBLISHERS (8) publishers,
// each on its own connection, publish BENCH_EVENTS messages each (default
// 20,000) into one NATS JetStream stream at once, file storage, with a
// duplicate window and each message carrying `Nats-Msg-Id: <origin>:<seq>`
// (the server drops a repeat, as the hub drops an event it holds). Each
// publisher keeps at most WINDOW publishes awaiting their acks. We time
// from the first publish to the last ack: total messages per second.
//
// The script starts its own nats-server (NATS_SERVER, default
// `nats-server` on PATH) with JetStream in a fresh directory. With
// NATS_SYNC=always the config adds `sync_interval: always` (an fsync per
// write, in servers that know the option); otherwise the server's default
// applies. With NATS_STRACE=FILE the server runs under
// `strace -f -c -e trace=fsync,fdatasync,pwrite64` and the counts go to FILE.
// Prints a table and a BENCH_JSON line.
'use strict';

const fs = require('fs');
const path = require('path');
const { spawn, execFileSync } = require('child_process');
const { connect, headers, StorageType, nanos } = require('nats');
const { nowMs, envInt, tempDir, emit, freePort } = require('./common');

const PUBLISHERS = 8;
const EVENTS = envInt('BENCH_EVENTS', 20_000);
/** Publishes in flight per publisher, awaiting their acks. */
const WINDOW = 256;
/** The stream's duplicate window. */
const DUPLICATE_WINDOW_MS = 120_000;
/** How long nats-server may take to accept connections. */
const START_LIMIT_MS = 30_000;
/** About the size of one signed, hash-chained booking event of the product. */
const PAYLOAD = JSON.stringify({
  kind: 'booking_created',
  booking: { id: '0190f0c4-0000-7000-8000-000000000000', pool_id: 'bench:pool', quantity: 1, customer: { name: 'Bench 000000' } },
  prev_hash: 'f'.repeat(64),
  signature: 's'.repeat(86),
});

async function startNats(dir, sync, stracePath) {
  const port = await freePort();
  const bin = process.env.NATS_SERVER || 'nats-server';
  const conf = path.join(dir, 'nats.conf');
  const pidFile = path.join(dir, 'nats.pid');
  fs.writeFileSync(
    conf,
    [
      `listen: "127.0.0.1:${port}"`,
      `pid_file: "${pidFile}"`,
      'jetstream {',
      `  store_dir: "${path.join(dir, 'js')}"`,
      sync === 'always' ? '  sync_interval: always' : '',
      '}',
      '',
    ].join('\n'),
  );
  const args = stracePath
    ? ['strace', ['-f', '-c', '-o', stracePath, '-e', 'trace=fsync,fdatasync,pwrite64', bin, '-c', conf]]
    : [bin, ['-c', conf]];
  const log = [];
  const child = spawn(args[0], args[1], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => log.push(String(d)));
  child.stderr.on('data', (d) => log.push(String(d)));
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const stop = async () => {
    // SIGTERM to nats-server itself (not strace), so that strace sees it
    // exit and writes its counts.
    try {
      process.kill(parseInt(fs.readFileSync(pidFile, 'utf8'), 10), 'SIGTERM');
    } catch (_) {
      child.kill('SIGTERM');
    }
    await exited;
  };
  process.on('exit', () => { try { child.kill('SIGKILL'); } catch (_) { /* gone */ } });
  const until = nowMs() + START_LIMIT_MS;
  for (;;) {
    if (child.exitCode !== null) return { error: log.join('').trim() };
    try {
      const nc = await connect({ servers: `127.0.0.1:${port}`, timeout: 1000 });
      await nc.close();
      break;
    } catch (e) {
      if (nowMs() > until) return { error: `nats-server did not start: ${e.message}` };
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { url: `127.0.0.1:${port}`, stop, log };
}

async function publisher(url, origin, ready) {
  const nc = await connect({ servers: url });
  const js = nc.jetstream();
  const payload = new TextEncoder().encode(PAYLOAD);
  await ready;
  const pending = [];
  for (let seq = 1; seq <= EVENTS; seq++) {
    const h = headers();
    h.set('Nats-Msg-Id', `${origin}:${seq}`);
    pending.push(js.publish(`ingest.${origin}`, payload, { headers: h }));
    if (pending.length >= WINDOW) {
      const ack = await pending.shift();
      if (ack.duplicate) throw new Error(`duplicate ${origin}`);
    }
  }
  await Promise.all(pending);
  const done = nowMs();
  await nc.close();
  return done;
}

function serverVersion(bin) {
  try {
    return execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  } catch (e) {
    return `unknown (${e.message})`;
  }
}

async function main() {
  const sync = process.env.NATS_SYNC === 'always' ? 'always' : 'default';
  const dir = tempDir('nats-ingest-');
  const server = await startNats(dir, sync, process.env.NATS_STRACE);
  const version = serverVersion(process.env.NATS_SERVER || 'nats-server');
  if (server.error) {
    console.log(`\nnats-server would not start with sync_interval=${sync}: ${server.error}\n`);
    emit({ bench: 'nats_ingest', sync_interval: sync, server_version: version, unsupported: true, error: server.error });
    return;
  }
  const admin = await connect({ servers: server.url });
  const jsm = await admin.jetstreamManager();
  await jsm.streams.add({
    name: 'INGEST',
    subjects: ['ingest.>'],
    storage: StorageType.File,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
  });
  let go;
  const ready = new Promise((resolve) => { go = resolve; });
  const publishers = Array.from({ length: PUBLISHERS }, (_, i) => publisher(server.url, `store${i}`, ready));
  // Let every publisher connect before the clock starts.
  await new Promise((r) => setTimeout(r, 500));
  const started = nowMs();
  go();
  const finished = Math.max(...(await Promise.all(publishers)));
  const took = (finished - started) / 1000;
  const info = await jsm.streams.info('INGEST');
  const total = PUBLISHERS * EVENTS;
  if (info.state.messages !== total) throw new Error(`stream holds ${info.state.messages} of ${total}`);
  await admin.close();
  await server.stop();
  // Calls by nats-server, from strace's summary (`% time seconds usecs/call calls [errors] syscall`).
  let syscalls = null;
  if (process.env.NATS_STRACE) {
    syscalls = { fsync: 0, fdatasync: 0, pwrite64: 0 };
    for (const line of fs.readFileSync(process.env.NATS_STRACE, 'utf8').split('\n')) {
      const m = line.trim().split(/\s+/);
      const name = m[m.length - 1];
      if (name in syscalls) syscalls[name] = parseInt(m[3], 10) || 0;
    }
  }
  const rate = total / took;
  console.log(`\nNATS JetStream, ${PUBLISHERS} publishers into one file-storage stream, sync_interval=${sync}:\n`);
  console.log('| measurement | figure |');
  console.log('|---|---|');
  console.log(`| messages published (acked) | ${total} |`);
  console.log(`| first publish to last ack | ${took.toFixed(2)} s |`);
  console.log(`| ingest throughput | ${rate.toFixed(0)} msgs/s |`);
  if (syscalls) console.log(`| nats-server calls (strace): fsync, fdatasync, pwrite64 | ${syscalls.fsync}, ${syscalls.fdatasync}, ${syscalls.pwrite64} |`);
  emit({
    bench: 'nats_ingest',
    sync_interval: sync,
    server_version: version,
    publishers: PUBLISHERS,
    window: WINDOW,
    payload_bytes: PAYLOAD.length,
    messages: total,
    seconds: took,
    messages_per_second: rate,
    server_syscalls: syscalls,
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
