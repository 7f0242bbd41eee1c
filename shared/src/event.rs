//! The event envelope, its canonical byte encoding and the per-origin hash
//! chain (docs/ARCHITECTURE.md, sections 5 and 7).
//!
//! An event is `{origin, epoch, seq, id, prev, at_ms, kind, body}`. The
//! envelope keeps `body` as JSON so a hub can store and relay events of kinds
//! newer than itself; [`EventBody`] is the typed view both binaries use.
//!
//! The canonical encoding is a domain tag followed by every field as a
//! big-endian `u32` length and its bytes, with the body as JSON whose object
//! keys are sorted and which carries no insignificant whitespace. The hash of
//! an event is the SHA-256 of that encoding; `prev` is the hash of the
//! previous event of the same origin, so each log is a hash chain.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use crate::booking::{BookingState, Channel, Customer, Line};
use crate::ids::{BookingId, LocationId, ParticipantId, PoolId, ResourceId};

/// Separates our event hashes from every other use of SHA-256.
const DOMAIN_TAG: &[u8] = b"booking-event-v1\0";

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev` of the first event of every log.
    pub const GENESIS: Self = Self([0; 32]);

    pub fn of(bytes: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    pub fn to_hex(&self) -> String {
        let mut buf = [0u8; 64];
        self.write_hex_str(&mut buf).to_owned()
    }

    /// [`Self::write_hex`] as a `str`.
    pub fn write_hex_str<'a>(&self, buf: &'a mut [u8; 64]) -> &'a str {
        std::str::from_utf8(self.write_hex(buf)).expect("hex digits are ASCII")
    }

    /// Lower-case hex into `buf`, without allocating.
    pub fn write_hex<'a>(&self, buf: &'a mut [u8; 64]) -> &'a [u8] {
        hex::encode_to_slice(self.0, buf).expect("64 hex digits fit 32 bytes");
        buf
    }

    pub fn parse_hex(value: &str) -> Option<Self> {
        let mut out = [0; 32];
        hex::decode_to_slice(value, &mut out).ok()?;
        Some(Self(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse_hex(&raw).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// What kind of thing a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// Countable items, one pool (e.g. a SKU for in-store pickup).
    Stock,
    /// Time-bound capacity, one pool per slot (a table, a class, a room-night).
    Slot,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stock => "stock",
            Self::Slot => "slot",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "stock" => Some(Self::Stock),
            "slot" => Some(Self::Slot),
            _ => None,
        }
    }
}

/// The typed content of an event. Times are UTC milliseconds since the epoch
/// so the encoding has one spelling for each instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum EventBody {
    ResourceCreated {
        id: ResourceId,
        owner: ParticipantId,
        name: String,
        kind: ResourceKind,
    },
    PoolCreated {
        id: PoolId,
        resource_id: ResourceId,
        owner: ParticipantId,
        capacity: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        starts_at_ms: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends_at_ms: Option<i64>,
    },
    PoolAdjusted {
        pool: PoolId,
        delta: i64,
    },
    AllotmentGranted {
        pool: PoolId,
        to: ParticipantId,
        units: i64,
    },
    AllotmentReturned {
        pool: PoolId,
        units: i64,
        /// When the return answers the owner's recall: the hub seq the
        /// recall arrived at, so a rebuild from this log does not answer it
        /// twice.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hub_seq: Option<u64>,
    },
    /// Recorded by a participant in its own log when units given to it
    /// (a grant, or a return to the owner) arrive through the hub's log at
    /// `hub_seq`. Keeps each participant's own log the whole story of its
    /// state, so it can be rebuilt from that log alone.
    AllotmentCredited {
        pool: PoolId,
        from: ParticipantId,
        units: i64,
        hub_seq: u64,
    },
    BookingCreated {
        id: BookingId,
        owner: ParticipantId,
        requested_by: ParticipantId,
        charged_to: ParticipantId,
        channel: Channel,
        lines: Vec<Line>,
        customer: Customer,
        state: BookingState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at_ms: Option<i64>,
        /// On a request: the owner places a pending hold of this many
        /// seconds instead of confirming.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold_seconds: Option<i64>,
        /// Why an owner rejected or expired a request on receipt.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    // `by` on the changes people make: the name of the signed-in staff
    // member who made it, for the booking's history. Absent when a device
    // token or the system acted.
    BookingConfirmed {
        id: BookingId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    BookingCancelled {
        id: BookingId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    BookingFulfilled {
        id: BookingId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Staff mark a confirmed slot booking whose slot has started and whose
    /// customer did not come.
    BookingNoShow {
        id: BookingId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    BookingExpired {
        id: BookingId,
        reason: String,
    },
    /// The owner asks a grantee (`from`) to give back up to `units` of its
    /// allotment; the grantee returns what it has unused.
    AllotmentRecalled {
        pool: PoolId,
        from: ParticipantId,
        units: i64,
    },
    /// The requester asks the participant charged with a booking to cancel it.
    BookingCancelRequested {
        id: BookingId,
    },
    /// A hub event telling its recipient that `location` enrolled a device:
    /// a participant it may now grant units to.
    LocationJoined {
        location: LocationId,
        name: String,
    },
    /// A hub event carrying another participant's event to its recipient.
    Relayed {
        event: Box<Event>,
    },
    /// Recorded by a participant in its own log when it applied an event of
    /// another participant that reached it through the hub's log at
    /// `hub_seq`, so its own log stays the whole story of its state.
    Observed {
        hub_seq: u64,
        event: Box<Event>,
    },
    /// Recorded by a participant in its own log when the event of the hub's
    /// log at `hub_seq` could not be applied (it failed the checks every
    /// receiver makes, or named what does not exist here): it is set aside
    /// for the manager to see, the hub learns of it with this event, and
    /// the events behind it are applied as usual.
    InboxSetAside {
        hub_seq: u64,
        /// Who wrote the refused event, and its kind, as far as they could
        /// be read.
        origin: String,
        kind: String,
        reason: String,
    },
}

impl EventBody {
    /// Splits into the envelope's `kind` and `body`.
    pub fn into_parts(self) -> (String, Value) {
        let tagged = serde_json::to_value(self).expect("event bodies always serialize");
        let Value::Object(mut map) = tagged else {
            unreachable!("adjacently tagged enums serialize as objects")
        };
        let kind = match map.remove("kind") {
            Some(Value::String(kind)) => kind,
            other => unreachable!("adjacent tag is a string, got {other:?}"),
        };
        (kind, map.remove("body").unwrap_or(Value::Null))
    }

    /// The typed view of an envelope's `kind` and `body`.
    pub fn from_parts(kind: &str, body: &Value) -> Result<Self, serde_json::Error> {
        let mut map = serde_json::Map::with_capacity(2);
        map.insert("kind".into(), Value::String(kind.to_owned()));
        map.insert("body".into(), body.clone());
        serde_json::from_value(Value::Object(map))
    }
}

/// One event of one participant's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub origin: ParticipantId,
    pub epoch: u32,
    pub seq: u64,
    pub id: Uuid,
    pub prev: Hash,
    pub at_ms: i64,
    pub kind: String,
    pub body: Value,
}

/// An event as its author stores it: the envelope's fields, the body as
/// canonical JSON, and the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEvent {
    pub seq: u64,
    pub id: Uuid,
    pub epoch: u32,
    pub prev: Hash,
    pub at_ms: i64,
    pub kind: String,
    pub body: String,
    pub hash: Hash,
}

struct Envelope<'a> {
    origin: &'a ParticipantId,
    epoch: u32,
    seq: u64,
    id: &'a Uuid,
    prev: &'a Hash,
    at_ms: i64,
    kind: &'a str,
    body: &'a str,
}

/// The bytes an event's hash and signatures cover: a domain tag, then each
/// field of the envelope as a 4-byte big-endian length and its text.
fn envelope_bytes(e: &Envelope<'_>) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("event fields are far below 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let mut out = Vec::with_capacity(DOMAIN_TAG.len() + e.body.len() + 200);
    out.extend_from_slice(DOMAIN_TAG);
    let mut id = Uuid::encode_buffer();
    let mut prev = [0u8; 64];
    field(&mut out, e.origin.as_str().as_bytes());
    field(&mut out, e.epoch.to_string().as_bytes());
    field(&mut out, e.seq.to_string().as_bytes());
    field(&mut out, e.id.hyphenated().encode_lower(&mut id).as_bytes());
    field(&mut out, e.prev.write_hex(&mut prev));
    field(&mut out, e.at_ms.to_string().as_bytes());
    field(&mut out, e.kind.as_bytes());
    field(&mut out, e.body.as_bytes());
    out
}

/// The last event of a log: what the next one must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainHead {
    /// 0 for an empty log; the first event has `seq` 1.
    pub seq: u64,
    pub hash: Hash,
}

impl ChainHead {
    pub const EMPTY: Self = Self {
        seq: 0,
        hash: Hash::GENESIS,
    };
}

impl Event {
    /// The event that follows `head` in `origin`'s log.
    pub fn next(
        head: ChainHead,
        origin: ParticipantId,
        epoch: u32,
        at_ms: i64,
        body: EventBody,
    ) -> Self {
        let (kind, body) = body.into_parts();
        Self {
            origin,
            epoch,
            seq: head.seq + 1,
            id: Uuid::now_v7(),
            prev: head.hash,
            at_ms,
            kind,
            body,
        }
    }

    /// The canonical bytes the hash and signatures cover.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        self.canonical_bytes_with(&canonical_json(&self.body))
    }

    /// The hash and the canonical body together, for a writer that stores
    /// both: the body is canonicalised once.
    pub fn sealed(&self) -> (Hash, String) {
        let body = canonical_json(&self.body);
        let hash = Hash::of(&self.canonical_bytes_with(&body));
        (hash, body)
    }

    fn canonical_bytes_with(&self, body: &str) -> Vec<u8> {
        envelope_bytes(&Envelope {
            origin: &self.origin,
            epoch: self.epoch,
            seq: self.seq,
            id: &self.id,
            prev: &self.prev,
            at_ms: self.at_ms,
            kind: &self.kind,
            body,
        })
    }

    /// The event that follows `head` in `origin`'s log, sealed as its
    /// author stores it: the same kind, body and hash as [`Self::next`]
    /// followed by [`Self::sealed`]. A `booking_created` body, written for
    /// every booking, is written straight from its type instead of through
    /// a `Value`.
    pub fn seal_next(
        head: ChainHead,
        origin: &ParticipantId,
        epoch: u32,
        at_ms: i64,
        body: &EventBody,
    ) -> SealedEvent {
        if let Some(sealed) = Self::seal_booking_created(head, origin, epoch, at_ms, body) {
            return sealed;
        }
        let (kind, body) = body.clone().into_parts();
        let body = canonical_json(&body);
        Self::seal(head, origin, epoch, at_ms, kind, body)
    }

    /// [`Self::seal_next`] for `booking_created`, the kind every booking
    /// writes: its members written in their sorted order by hand, instead of
    /// collected and sorted. Tested to give the same bytes as the general
    /// path.
    fn seal_booking_created(
        head: ChainHead,
        origin: &ParticipantId,
        epoch: u32,
        at_ms: i64,
        body: &EventBody,
    ) -> Option<SealedEvent> {
        let EventBody::BookingCreated {
            id,
            owner,
            requested_by,
            charged_to,
            channel,
            lines,
            customer,
            state,
            expires_at_ms,
            hold_seconds,
            reason,
        } = body
        else {
            return None;
        };
        enum Leaf<'a> {
            Text(&'a str),
            Int(i64),
        }
        fn member(out: &mut String, key: &str, value: Leaf<'_>) {
            if !out.ends_with('{') {
                out.push(',');
            }
            write_json_string(key, out);
            out.push(':');
            match value {
                Leaf::Text(text) => write_json_string(text, out),
                Leaf::Int(n) => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "{n}");
                }
            }
        }
        use Leaf::{Int, Text};
        let mut out = String::with_capacity(512);
        out.push('{');
        member(&mut out, "channel", Text(channel.as_str()));
        member(&mut out, "charged_to", Text(charged_to.as_str()));
        out.push_str(",\"customer\":{");
        if let Some(email) = &customer.email {
            member(&mut out, "email", Text(email));
        }
        member(&mut out, "name", Text(&customer.name));
        if let Some(phone) = &customer.phone {
            member(&mut out, "phone", Text(phone));
        }
        out.push('}');
        if let Some(expires_at_ms) = expires_at_ms {
            member(&mut out, "expires_at_ms", Int(*expires_at_ms));
        }
        if let Some(hold_seconds) = hold_seconds {
            member(&mut out, "hold_seconds", Int(*hold_seconds));
        }
        let mut uuid = Uuid::encode_buffer();
        member(
            &mut out,
            "id",
            Text(id.uuid().hyphenated().encode_lower(&mut uuid)),
        );
        out.push_str(",\"lines\":[");
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            member(&mut out, "pool_id", Text(line.pool_id.as_str()));
            member(&mut out, "quantity", Int(line.quantity));
            out.push('}');
        }
        out.push(']');
        member(&mut out, "owner", Text(owner.as_str()));
        if let Some(reason) = reason {
            member(&mut out, "reason", Text(reason));
        }
        member(&mut out, "requested_by", Text(requested_by.as_str()));
        member(&mut out, "state", Text(state.as_str()));
        out.push('}');
        Some(Self::seal(
            head,
            origin,
            epoch,
            at_ms,
            "booking_created".to_owned(),
            out,
        ))
    }

    fn seal(
        head: ChainHead,
        origin: &ParticipantId,
        epoch: u32,
        at_ms: i64,
        kind: String,
        body: String,
    ) -> SealedEvent {
        let (seq, id, prev) = (head.seq + 1, Uuid::now_v7(), head.hash);
        let hash = Hash::of(&envelope_bytes(&Envelope {
            origin,
            epoch,
            seq,
            id: &id,
            prev: &prev,
            at_ms,
            kind: &kind,
            body: &body,
        }));
        SealedEvent {
            seq,
            id,
            epoch,
            prev,
            at_ms,
            kind,
            body,
            hash,
        }
    }

    pub fn hash(&self) -> Hash {
        Hash::of(&self.canonical_bytes())
    }

    /// This event as its author stores it.
    pub fn to_sealed(&self) -> SealedEvent {
        let (hash, body) = self.sealed();
        SealedEvent {
            seq: self.seq,
            id: self.id,
            epoch: self.epoch,
            prev: self.prev,
            at_ms: self.at_ms,
            kind: self.kind.clone(),
            body,
            hash,
        }
    }

    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash(),
        }
    }

    pub fn typed(&self) -> Result<EventBody, serde_json::Error> {
        EventBody::from_parts(&self.kind, &self.body)
    }
}

/// JSON with object keys sorted and no insignificant whitespace. Written out
/// here rather than relying on `serde_json`'s map order, which a feature flag
/// anywhere in the dependency tree could change.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_json_string(text, out),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            use std::fmt::Write;
            let _ = write!(out, "{n}");
        }
    }
}

/// A JSON string literal exactly as `serde_json` writes one, without an
/// allocation of its own.
fn write_json_string(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// What a receiver does with an event of an origin whose log it holds up to
/// some head (docs/ARCHITECTURE.md, section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainVerdict {
    /// `seq == last + 1` with a matching `prev`: apply it.
    Apply,
    /// Already held with the same hash: acknowledge again, no effect.
    Duplicate,
    /// Same `seq` with another hash, or a `prev` that does not match: the
    /// sender's log diverged from what we hold. Refuse and quarantine.
    Fork { seq: u64 },
    /// Events are missing before this one: refuse and ask for `expected`.
    Gap { expected: u64 },
    /// Authored under an epoch older than the one the device now has.
    Fenced { epoch: u32, current: u32 },
}

/// Classifies `event` against the receiver's `head` of its origin's log.
///
/// `stored_at_seq` is the hash the receiver holds at `event.seq` when that
/// is not beyond the head. New events must carry at least `epoch_floor`, the
/// epoch the device was last given.
pub fn check_next(
    head: ChainHead,
    event: &Event,
    stored_at_seq: Option<Hash>,
    epoch_floor: u32,
) -> ChainVerdict {
    if event.seq == 0 {
        return ChainVerdict::Gap {
            expected: head.seq + 1,
        };
    }
    if event.seq <= head.seq {
        return match stored_at_seq {
            Some(hash) if hash == event.hash() => ChainVerdict::Duplicate,
            // Another event where the receiver holds one of a newer epoch:
            // an old copy of the device (from before a reset) speaking, not
            // the device's own log diverging. Fenced, so the device as it
            // is now is not quarantined for what its old copy says.
            _ if event.epoch < epoch_floor => ChainVerdict::Fenced {
                epoch: event.epoch,
                current: epoch_floor,
            },
            _ => ChainVerdict::Fork { seq: event.seq },
        };
    }
    if event.seq > head.seq + 1 {
        return ChainVerdict::Gap {
            expected: head.seq + 1,
        };
    }
    if event.epoch < epoch_floor {
        return ChainVerdict::Fenced {
            epoch: event.epoch,
            current: epoch_floor,
        };
    }
    if event.prev != head.hash {
        return ChainVerdict::Fork { seq: event.seq };
    }
    ChainVerdict::Apply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ParticipantId {
        ParticipantId::parse("store-1").expect("valid")
    }

    fn body(n: i64) -> EventBody {
        EventBody::PoolAdjusted {
            pool: PoolId::parse("p").expect("valid"),
            delta: n,
        }
    }

    fn chain(len: usize) -> Vec<Event> {
        let mut head = ChainHead::EMPTY;
        (0..len)
            .map(|i| {
                let e = Event::next(head, store(), 1, 1_000 + i as i64, body(i as i64));
                head = e.head();
                e
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(text in "(?s).{0,40}") {
            let mut ours = String::new();
            write_json_string(&text, &mut ours);
            proptest::prop_assert_eq!(ours, serde_json::to_string(&text).expect("json"));
        }
    }

    #[test]
    fn control_characters_and_quotes_are_escaped_like_serde_json() {
        for text in [
            "",
            "a\"b\\c",
            "\u{0}\u{1f}\u{7f}\n\r\t\u{8}\u{c}",
            "é\u{1F600}x",
        ] {
            let mut ours = String::new();
            write_json_string(text, &mut ours);
            assert_eq!(ours, serde_json::to_string(text).expect("json"));
        }
        let numbers = serde_json::json!([0, -7, u64::MAX, i64::MIN, 1.5, -0.25, 1e300]);
        assert_eq!(
            canonical_json(&numbers),
            serde_json::to_string(&numbers).expect("json")
        );
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": 1, "a": {"z": [1, {"y": 2, "x": "é"}], "c": null} }"#)
                .expect("json");
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":null,"z":[1,{"x":"é","y":2}]},"b":1}"#
        );
    }

    #[test]
    fn the_hash_covers_every_field_of_the_envelope() {
        let e = chain(1).remove(0);
        let base = e.hash();
        let mut variants = Vec::new();
        let mut v = e.clone();
        v.origin = ParticipantId::Hub;
        variants.push(v);
        let mut v = e.clone();
        v.epoch += 1;
        variants.push(v);
        let mut v = e.clone();
        v.seq += 1;
        variants.push(v);
        let mut v = e.clone();
        v.id = Uuid::now_v7();
        variants.push(v);
        let mut v = e.clone();
        v.prev = Hash::of(b"x");
        variants.push(v);
        let mut v = e.clone();
        v.at_ms += 1;
        variants.push(v);
        let mut v = e.clone();
        v.kind = "pool_created".into();
        variants.push(v);
        let mut v = e.clone();
        v.body["delta"] = Value::from(99);
        variants.push(v);
        for v in variants {
            assert_ne!(v.hash(), base, "{v:?}");
        }
    }

    #[test]
    fn the_hash_does_not_depend_on_how_the_body_was_spelled() {
        let e = chain(1).remove(0);
        let respelled: Value =
            serde_json::from_str(r#"{ "delta" : 0, "pool" : "p" }"#).expect("json");
        let mut same = e.clone();
        same.body = respelled;
        assert_eq!(same.hash(), e.hash());
    }

    #[test]
    fn events_round_trip_through_json_with_the_same_hash() {
        for e in chain(3) {
            let json = serde_json::to_string(&e).expect("serialize");
            let back: Event = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back.hash(), e.hash());
            assert_eq!(back.typed().expect("typed"), e.typed().expect("typed"));
        }
    }

    #[test]
    fn each_event_points_at_the_hash_of_the_one_before() {
        let events = chain(4);
        assert_eq!(events[0].prev, Hash::GENESIS);
        for pair in events.windows(2) {
            assert_eq!(pair[1].prev, pair[0].hash());
            assert_eq!(pair[1].seq, pair[0].seq + 1);
        }
    }

    #[test]
    fn receivers_apply_the_next_event_and_nothing_else() {
        let events = chain(3);
        let head = events[1].head();
        let hash_at = |seq: u64| Some(events[seq as usize - 1].hash());
        assert_eq!(check_next(head, &events[2], None, 1), ChainVerdict::Apply);
        assert_eq!(
            check_next(head, &events[0], hash_at(1), 1),
            ChainVerdict::Duplicate
        );

        let mut forked = events[1].clone();
        forked.at_ms += 5;
        assert_eq!(
            check_next(head, &forked, hash_at(2), 1),
            ChainVerdict::Fork { seq: 2 }
        );

        let mut wrong_prev = events[2].clone();
        wrong_prev.prev = Hash::of(b"elsewhere");
        assert_eq!(
            check_next(head, &wrong_prev, None, 1),
            ChainVerdict::Fork { seq: 3 }
        );

        let mut ahead = events[2].clone();
        ahead.seq = 5;
        assert_eq!(
            check_next(head, &ahead, None, 1),
            ChainVerdict::Gap { expected: 3 }
        );

        assert_eq!(
            check_next(head, &events[2], None, 2),
            ChainVerdict::Fenced {
                epoch: 1,
                current: 2
            }
        );

        // An old copy's event where the receiver holds a newer epoch's: the
        // copy is fenced, the log is not called forked.
        let mut other = events[1].clone();
        other.body = serde_json::json!({"pool": "p", "delta": 99});
        assert_eq!(
            check_next(head, &other, Some(events[1].hash()), 2),
            ChainVerdict::Fenced {
                epoch: 1,
                current: 2
            }
        );
        assert_eq!(
            check_next(head, &other, Some(events[1].hash()), 1),
            ChainVerdict::Fork { seq: 2 }
        );
    }

    #[test]
    fn typed_bodies_split_into_kind_and_body_and_back() {
        let b = EventBody::BookingExpired {
            id: crate::ids::BookingId::generate(),
            reason: "hold ran out".into(),
        };
        let (kind, json) = b.clone().into_parts();
        assert_eq!(kind, "booking_expired");
        assert_eq!(EventBody::from_parts(&kind, &json).expect("typed"), b);
        assert!(EventBody::from_parts("no_such_kind", &json).is_err());
    }
    /// One body of every kind, with optional fields both set and not, and
    /// text that needs escaping.
    fn one_of_each_kind() -> Vec<EventBody> {
        let pool = PoolId::parse("store-1:cups").expect("id");
        let store = store();
        let other = ParticipantId::parse("store-2").expect("id");
        let booking = crate::ids::BookingId::generate();
        let nested = Event::next(ChainHead::EMPTY, other.clone(), 3, 7, body(-4));
        vec![
            EventBody::ResourceCreated {
                id: ResourceId::parse("store-1:cups").expect("id"),
                owner: store.clone(),
                name: "Caf\u{e9} \"cups\"\n\u{1}".into(),
                kind: ResourceKind::Slot,
            },
            EventBody::PoolCreated {
                id: pool.clone(),
                resource_id: ResourceId::parse("store-1:cups").expect("id"),
                owner: store.clone(),
                capacity: 12,
                starts_at_ms: Some(1_700_000_000_000),
                ends_at_ms: Some(1_700_003_600_000),
            },
            EventBody::PoolAdjusted {
                pool: pool.clone(),
                delta: i64::MIN,
            },
            EventBody::AllotmentGranted {
                pool: pool.clone(),
                to: ParticipantId::Hub,
                units: 3,
            },
            EventBody::AllotmentReturned {
                pool: pool.clone(),
                units: 1,
                hub_seq: Some(u64::MAX),
            },
            EventBody::AllotmentReturned {
                pool: pool.clone(),
                units: 1,
                hub_seq: None,
            },
            EventBody::AllotmentCredited {
                pool: pool.clone(),
                from: other.clone(),
                units: 2,
                hub_seq: 9,
            },
            EventBody::BookingCreated {
                id: booking,
                owner: store.clone(),
                requested_by: ParticipantId::Hub,
                charged_to: store.clone(),
                channel: crate::booking::Channel::Web,
                lines: vec![
                    crate::booking::Line {
                        pool_id: pool.clone(),
                        quantity: 2,
                    },
                    crate::booking::Line {
                        pool_id: PoolId::parse("store-1:beans").expect("id"),
                        quantity: 1,
                    },
                ],
                customer: crate::booking::Customer {
                    name: "Zo\u{eb} \u{1f600}".into(),
                    phone: Some("+49 30 1234".into()),
                    email: None,
                },
                state: crate::booking::BookingState::Requested,
                expires_at_ms: Some(5),
                hold_seconds: Some(600),
                reason: Some("tab\tand \\ slash".into()),
            },
            EventBody::BookingConfirmed {
                id: booking,
                by: Some("Alice".into()),
            },
            EventBody::BookingCancelled {
                id: booking,
                by: None,
            },
            EventBody::BookingFulfilled {
                id: booking,
                by: None,
            },
            EventBody::BookingNoShow {
                id: booking,
                by: Some("Alice".into()),
            },
            EventBody::BookingExpired {
                id: booking,
                reason: String::new(),
            },
            EventBody::AllotmentRecalled {
                pool,
                from: other,
                units: 4,
            },
            EventBody::BookingCancelRequested { id: booking },
            EventBody::LocationJoined {
                location: LocationId::parse("store-2").expect("id"),
                name: "Store 2".into(),
            },
            EventBody::Relayed {
                event: Box::new(nested.clone()),
            },
            EventBody::Observed {
                hub_seq: 17,
                event: Box::new(nested),
            },
            EventBody::InboxSetAside {
                hub_seq: 18,
                origin: "store-2".into(),
                kind: "pool_created".into(),
                reason: "pool store-2:x names unknown resource \"q\"\n".into(),
            },
        ]
    }

    #[test]
    fn every_kind_has_an_author_in_the_authorization_table() {
        for body in one_of_each_kind() {
            let (kind, _) = body.into_parts();
            assert!(crate::authz::author_of(&kind).is_some(), "{kind}");
        }
        assert_eq!(one_of_each_kind().len(), crate::authz::AUTHORS.len() + 1);
    }

    #[test]
    fn sealing_from_the_typed_body_gives_the_bytes_and_hash_of_the_value_path() {
        let head = ChainHead {
            seq: 41,
            hash: Hash::of(b"head"),
        };
        for body in one_of_each_kind() {
            let sealed = Event::seal_next(head, &store(), 2, 1_234, &body);
            let event = Event {
                id: sealed.id,
                ..Event::next(head, store(), 2, 1_234, body.clone())
            };
            let (hash, json) = event.sealed();
            assert_eq!(sealed.kind, event.kind, "{body:?}");
            assert_eq!(sealed.body, json, "{body:?}");
            assert_eq!(sealed.hash, hash, "{body:?}");
            assert_eq!((sealed.seq, sealed.prev), (42, head.hash));
        }
    }

    proptest::proptest! {
        #[test]
        fn a_booking_created_seals_the_same_by_hand_as_in_general(
            channel in 0usize..4,
            state in 0usize..7,
            name in "(?s).{0,16}",
            phone in proptest::option::of(".{0,8}"),
            email in proptest::option::of("[a-z\"\\\\]{0,8}"),
            expires_at_ms in proptest::option::of(proptest::num::i64::ANY),
            hold_seconds in proptest::option::of(0i64..100_000),
            reason in proptest::option::of("(?s).{0,8}"),
            quantities in proptest::collection::vec(1i64..1000, 1..4),
        ) {
            use crate::booking::{BookingState as S, Channel as C};
            let body = EventBody::BookingCreated {
                id: crate::ids::BookingId::generate(),
                owner: store(),
                requested_by: ParticipantId::Hub,
                charged_to: ParticipantId::parse("store-2").expect("id"),
                channel: [C::Kiosk, C::Staff, C::Web, C::Api][channel],
                lines: quantities
                    .iter()
                    .enumerate()
                    .map(|(i, quantity)| crate::booking::Line {
                        pool_id: PoolId::parse(&format!("store-1:p{i}")).expect("id"),
                        quantity: *quantity,
                    })
                    .collect(),
                customer: crate::booking::Customer { name, phone, email },
                state: [
                    S::Requested,
                    S::Held,
                    S::Confirmed,
                    S::Rejected,
                    S::Cancelled,
                    S::Fulfilled,
                    S::Expired,
                ][state],
                expires_at_ms,
                hold_seconds,
                reason,
            };
            let head = ChainHead { seq: 7, hash: Hash::of(b"seven") };
            let by_hand = Event::seal_next(head, &store(), 1, 99, &body);
            let general = canonical_json(&body.clone().into_parts().1);
            proptest::prop_assert_eq!(&by_hand.body, &general);
            let event = Event { id: by_hand.id, ..Event::next(head, store(), 1, 99, body) };
            proptest::prop_assert_eq!(by_hand.hash, event.sealed().0);
        }
    }

    #[test]
    fn the_canonical_encoding_and_its_hash_never_change() {
        // Events are signed and chained by these bytes: a change would fork
        // every log. The constant was computed by the first implementation.
        let event = Event {
            origin: ParticipantId::parse("store-1").expect("id"),
            epoch: 2,
            seq: 42,
            id: Uuid::parse_str("0190b1a2-c3d4-7e8f-9a0b-1c2d3e4f5a6b").expect("uuid"),
            prev: Hash::of(b"previous"),
            at_ms: 1_763_856_000_000,
            kind: "booking_created".into(),
            body: serde_json::json!({
                "z": [1, -2, 1.5, null, true, "\u{1}\t"],
                "a": {"name": "Zoë \"Q\"\n\\", "b": {}, "B": []},
            }),
        };
        assert_eq!(
            event.hash().to_hex(),
            "34a1ab370d4d8fc495505efd68715d4f5088b3e39a89f36651b1b1d7c5afb2cb"
        );
    }
}
