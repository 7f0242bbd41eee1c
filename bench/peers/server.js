// Starts pouchdb-server (its own LevelDB storage) as a child process on a
// free loopback port, in a fresh directory; with LEVEL_SYNC=1 it runs with
// force_sync.js preloaded, so the server's writes are synchronous too.
// Nothing is measured here.
'use strict';

const path = require('path');
const { spawn } = require('child_process');
const { tempDir, waitForHttp, freePort } = require('./common');

/** How long pouchdb-server may take to start answering. */
const START_LIMIT_MS = 60_000;

async function startServer() {
  const dir = tempDir('pouch-server-');
  const port = await freePort();
  const bin = require.resolve('pouchdb-server/bin/pouchdb-server');
  const child = spawn(
    process.execPath,
    ['-r', path.join(__dirname, 'force_sync.js'), bin, '-p', String(port), '-o', '127.0.0.1', '-d', dir, '-n'],
    { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'], env: process.env },
  );
  const stop = () => { try { child.kill('SIGKILL'); } catch (_) { /* gone */ } };
  process.on('exit', stop);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(url, START_LIMIT_MS);
  return { url, child, stop };
}

module.exports = { startServer };
