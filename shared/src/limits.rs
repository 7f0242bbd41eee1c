//! Every limit the system enforces, named once, with the reason for its value.

/// Largest request body either server accepts. A booking with the maximum
/// number of lines and long customer fields stays well under 16 KiB; 64 KiB
/// leaves room for growth while keeping a hostile client from making us buffer
/// megabytes.
pub const REQUEST_BODY_MAX_BYTES: usize = 64 * 1024;

/// Lines in one booking. A basket larger than this is not a booking a person
/// makes at a counter, and it bounds the work one request can ask of the
/// single writer.
pub const BOOKING_LINES_MAX: usize = 100;

/// Units in one line. Bounds the arithmetic and refuses typos like 1e9.
pub const LINE_QUANTITY_MAX: i64 = 1_000_000;

/// Capacity of one pool. Large enough for any warehouse count, small enough
/// that sums over many pools stay far from `i64` overflow.
pub const POOL_CAPACITY_MAX: i64 = 1_000_000_000;

/// Display names of resources.
pub const RESOURCE_NAME_MAX_CHARS: usize = 200;

/// Customer fields. 254 is the longest address RFC 5321 lets through.
pub const CUSTOMER_NAME_MAX_CHARS: usize = 200;
pub const CUSTOMER_PHONE_MAX_CHARS: usize = 40;
pub const CUSTOMER_EMAIL_MAX_CHARS: usize = 254;

/// Longest pending hold: a week covers "keep it for me until Saturday".
pub const HOLD_SECONDS_MAX: i64 = 7 * 24 * 3600;

/// Idempotency keys as payment APIs accept them.
pub const IDEMPOTENCY_KEY_MAX_CHARS: usize = 255;

/// How long an idempotency key is remembered. The contract promises at least
/// 24 hours; records are purged only after this.
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Ids chosen by clients (resource, pool) and the participant ids.
pub const ID_MAX_CHARS: usize = 128;

/// Bookings returned by one list call.
pub const BOOKING_LIST_MAX: usize = 500;

/// Longest staff name an event may carry as who made a change: the longest
/// name a store accepts for a user.
pub const ACTOR_NAME_MAX_CHARS: usize = 100;

/// Events in one pushed batch. A batch is one transaction at the hub; 500
/// keeps each under a few milliseconds while amortising the fsync.
pub const PUSH_BATCH_EVENTS_MAX: usize = 500;

/// Encoded size of one pushed batch; the hub's body limit for sync pushes
/// is twice this.
pub const PUSH_BATCH_BYTES_MAX: usize = 1024 * 1024;

/// Request body limit of the hub's sync endpoints.
pub const SYNC_BODY_MAX_BYTES: usize = 2 * PUSH_BATCH_BYTES_MAX;

/// Inbox events in one pull answer.
pub const PULL_EVENTS_MAX: usize = 500;

/// Events in one page of a log download (reset, restore).
pub const LOG_PAGE_EVENTS_MAX: usize = 1000;

/// Longest a pull waits for something to arrive. Below the hub's 5 s
/// unreachable threshold, so a connected store is never taken for gone.
pub const LONG_POLL_MAX_MS: u64 = 4000;

/// Default clock skew margin; an offset beyond half of it
/// is an alert.
pub const SKEW_MARGIN_MS: i64 = 30_000;

/// How long a request may wait for its owner by default.
pub const REQUEST_TTL_DEFAULT_S: i64 = 900;

/// Longest a request may wait for its owner: a day.
pub const REQUEST_TTL_MAX_S: i64 = 24 * 3600;

/// Longest a web order waits for the owner's decision before answering 202.
pub const WAIT_MS_MAX: u64 = 10_000;

/// Reasons carried by events (why a request was rejected, why an inbox
/// event was set aside). Long enough for a sentence naming a pool id or
/// two; a receiver refuses longer ones rather than store a novel.
pub const REASON_MAX_CHARS: usize = 500;

/// Units moved by one grant, return, recall or credit: no more than a pool
/// can hold.
pub const ALLOTMENT_UNITS_MAX: i64 = POOL_CAPACITY_MAX;
