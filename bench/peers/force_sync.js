// Preloaded with `node -r ./force_sync.js` when LEVEL_SYNC=1: makes every
// write that LevelDB (leveldown) takes a synchronous one (`sync: true`,
// LevelDB's fdatasync of its log before the write returns), whichever
// copy of leveldown the process loads (PouchDB's, or pouchdb-server's own
// older one). PouchDB's LevelDB adapter has no option for this itself.
// Nothing is measured here; bench/run checks with strace that it works.
'use strict';

const Module = require('module');

const PATCHED = Symbol('forceSync');

function forceSync(options) {
  return Object.assign({}, options, { sync: true });
}

function patch(leveldown) {
  const proto = leveldown && leveldown.prototype;
  if (!proto || proto[PATCHED]) return;
  proto[PATCHED] = true;
  const put = proto._put;
  if (typeof put === 'function') {
    proto._put = function (key, value, options, callback) {
      return put.call(this, key, value, forceSync(options), callback);
    };
  }
  const del = proto._del;
  if (typeof del === 'function') {
    proto._del = function (key, options, callback) {
      return del.call(this, key, forceSync(options), callback);
    };
  }
  const batch = proto._batch;
  if (typeof batch === 'function') {
    proto._batch = function (operations, options, callback) {
      return batch.call(this, operations, forceSync(options), callback);
    };
  }
  const chained = proto._chainedBatch;
  if (typeof chained === 'function') {
    proto._chainedBatch = function () {
      const b = chained.apply(this, arguments);
      const write = b._write;
      b._write = function (options, callback) {
        return write.call(this, forceSync(options), callback);
      };
      return b;
    };
  }
}

if (process.env.LEVEL_SYNC === '1') {
  const load = Module._load;
  Module._load = function (request) {
    const loaded = load.apply(this, arguments);
    if (/(^|[\\/])leveldown([\\/]|$)/.test(request) && typeof loaded === 'function') patch(loaded);
    return loaded;
  };
}
