//! The rule against a small, fixed world: one table of events each author
//! might write, with the verdict every receiver must reach.

use std::collections::HashMap;

use uuid::Uuid;

use super::*;
use crate::event::ChainHead;

fn p(id: &str) -> ParticipantId {
    ParticipantId::parse(id).expect("participant")
}

fn pool(id: &str) -> PoolId {
    PoolId::parse(id).expect("pool")
}

fn line(pool_id: &str, quantity: i64) -> Line {
    Line {
        pool_id: pool(pool_id),
        quantity,
    }
}

fn ada() -> Customer {
    Customer {
        name: "Ada".into(),
        phone: None,
        email: None,
    }
}

/// Bookings of the world, by a readable name.
const REQUEST_BY_HUB: u128 = 1;
const CONFIRMED_BY_S1: u128 = 2;
const DECIDED_FOR_S3: u128 = 3;
const S3_CANCELLED_SALE: u128 = 4;
const HELD_BY_S1: u128 = 5;
const S3_FULFILLED_SALE: u128 = 6;

fn booking(n: u128) -> BookingId {
    BookingId::parse(&Uuid::from_u128(n).to_string()).expect("id")
}

#[derive(Default)]
struct World {
    resources: HashMap<String, ResourceFacts>,
    pools: HashMap<String, PoolFacts>,
    bookings: HashMap<BookingId, BookingFacts>,
    available: HashMap<(String, String), i64>,
    in_flight: HashMap<(String, String, String), i64>,
}

impl Facts for World {
    type Error = std::convert::Infallible;
    fn resource(&self, id: &ResourceId) -> Result<Option<ResourceFacts>, Self::Error> {
        Ok(self.resources.get(id.as_str()).cloned())
    }
    fn pool(&self, id: &PoolId) -> Result<Option<PoolFacts>, Self::Error> {
        Ok(self.pools.get(id.as_str()).cloned())
    }
    fn booking(&self, id: &BookingId) -> Result<Option<BookingFacts>, Self::Error> {
        Ok(self.bookings.get(id).cloned())
    }
    fn available(&self, pool: &PoolId, holder: &ParticipantId) -> Result<Option<i64>, Self::Error> {
        let key = (pool.as_str().to_owned(), holder.as_str().to_owned());
        Ok(Some(self.available.get(&key).copied().unwrap_or(0)))
    }
    fn in_flight(
        &self,
        pool: &PoolId,
        from: &ParticipantId,
        to: &ParticipantId,
    ) -> Result<Option<i64>, Self::Error> {
        let key = (
            pool.as_str().to_owned(),
            from.as_str().to_owned(),
            to.as_str().to_owned(),
        );
        Ok(Some(self.in_flight.get(&key).copied().unwrap_or(0)))
    }
    fn may_receive(&self, participant: &ParticipantId) -> Result<Option<bool>, Self::Error> {
        Ok(Some(matches!(
            participant.as_str(),
            "hub" | "s1" | "s2" | "s3"
        )))
    }
}

fn world() -> World {
    let mut w = World::default();
    let resource = |owner: &str, kind, has_pools| ResourceFacts {
        owner: p(owner),
        kind,
        has_pools,
    };
    w.resources
        .insert("s1:beans".into(), resource("s1", ResourceKind::Stock, true));
    w.resources
        .insert("s1:class".into(), resource("s1", ResourceKind::Slot, false));
    w.resources
        .insert("s1:mugs".into(), resource("s1", ResourceKind::Stock, false));
    w.resources
        .insert("s2:cups".into(), resource("s2", ResourceKind::Stock, true));
    w.pools.insert(
        "s1:beans".into(),
        PoolFacts {
            owner: p("s1"),
            capacity: 10,
        },
    );
    w.pools.insert(
        "s2:cups".into(),
        PoolFacts {
            owner: p("s2"),
            capacity: 5,
        },
    );
    for (holder, units) in [("s1", 6), ("hub", 3), ("s3", 1)] {
        w.available
            .insert(("s1:beans".into(), holder.into()), units);
    }
    w.in_flight
        .insert(("s1:beans".into(), "s1".into(), "s3".into()), 2);
    let facts = |requested_by: &str, charged_to: &str, state, quantity| BookingFacts {
        owner: p("s1"),
        requested_by: p(requested_by),
        charged_to: p(charged_to),
        charged_state: Some(state),
        channel: Channel::Web,
        lines: vec![line("s1:beans", quantity)],
        customer: ada(),
    };
    use BookingState as S;
    w.bookings
        .insert(booking(REQUEST_BY_HUB), facts("hub", "s1", S::Requested, 2));
    w.bookings
        .insert(booking(CONFIRMED_BY_S1), facts("s1", "s1", S::Confirmed, 1));
    w.bookings
        .insert(booking(DECIDED_FOR_S3), facts("s3", "s1", S::Confirmed, 1));
    w.bookings.insert(
        booking(S3_CANCELLED_SALE),
        facts("s3", "s3", S::Cancelled, 1),
    );
    w.bookings
        .insert(booking(HELD_BY_S1), facts("s1", "s1", S::Held, 1));
    w.bookings.insert(
        booking(S3_FULFILLED_SALE),
        facts("s3", "s3", S::Fulfilled, 1),
    );
    w
}

const AT: i64 = 1_800_000_000_000;

fn event(author: &str, body: EventBody) -> (Event, EventBody) {
    let mut e = Event::next(ChainHead::EMPTY, p(author), 1, AT, body.clone());
    e.at_ms = AT;
    (e, body)
}

fn created(
    id: BookingId,
    requested_by: &str,
    charged_to: &str,
    state: BookingState,
    lines: Vec<Line>,
) -> EventBody {
    EventBody::BookingCreated {
        id,
        owner: p("s1"),
        requested_by: p(requested_by),
        charged_to: p(charged_to),
        channel: Channel::Web,
        lines,
        customer: ada(),
        state,
        expires_at_ms: match state {
            BookingState::Requested => Some(AT + 900_000),
            BookingState::Held => Some(AT + 600_000),
            _ => None,
        },
        hold_seconds: None,
        reason: None,
    }
}

fn with_hold_seconds(mut body: EventBody, seconds: i64) -> EventBody {
    if let EventBody::BookingCreated { hold_seconds, .. } = &mut body {
        *hold_seconds = Some(seconds);
    }
    body
}

fn with_expiry(mut body: EventBody, at: Option<i64>) -> EventBody {
    if let EventBody::BookingCreated { expires_at_ms, .. } = &mut body {
        *expires_at_ms = at;
    }
    body
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    Forbidden,
    Invalid,
}

fn verdict(author: &str, body: EventBody) -> Expect {
    let (event, body) = event(author, body);
    match check(&event, &body, &world()).expect("no lookup fails here") {
        Ok(()) => Expect::Allowed,
        Err(Denied::Forbidden(_)) => Expect::Forbidden,
        Err(Denied::Invalid(_)) => Expect::Invalid,
    }
}

fn resource_created(id: &str, owner: &str, name: &str) -> EventBody {
    EventBody::ResourceCreated {
        id: ResourceId::parse(id).expect("id"),
        owner: p(owner),
        name: name.into(),
        kind: ResourceKind::Stock,
    }
}

fn pool_created(id: &str, resource: &str, owner: &str, times: Option<(i64, i64)>) -> EventBody {
    EventBody::PoolCreated {
        id: pool(id),
        resource_id: ResourceId::parse(resource).expect("id"),
        owner: p(owner),
        capacity: 4,
        starts_at_ms: times.map(|t| t.0),
        ends_at_ms: times.map(|t| t.1),
    }
}

#[test]
fn every_kind_has_an_author_rule_and_every_rule_a_kind() {
    for (kind, _) in AUTHORS {
        let body = serde_json::json!({});
        // The kind parses as a kind (the body is beside the point here).
        let known = EventBody::from_parts(kind, &body)
            .err()
            .is_none_or(|e| !e.to_string().contains("unknown variant"));
        assert!(known, "{kind} is in the table but not an event kind");
    }
    assert_eq!(author_of("no_such_kind"), None);
    let (mut e, body) = event(
        "s1",
        EventBody::BookingConfirmed {
            id: booking(CONFIRMED_BY_S1),
            by: None,
        },
    );
    e.kind = "no_such_kind".into();
    assert!(matches!(
        check(&e, &body, &world()).expect("lookups"),
        Err(Denied::Invalid(_))
    ));
}

#[test]
fn each_event_gets_the_verdict_of_the_table() {
    use BookingState as S;
    use Expect::{Allowed, Forbidden, Invalid};
    let new = BookingId::generate;
    let cases: Vec<(&str, &str, EventBody, Expect)> = vec![
        // Catalog: own namespace, new ids, known and owned references.
        (
            "a new resource",
            "s1",
            resource_created("s1:tea", "s1", "Tea"),
            Allowed,
        ),
        (
            "a resource in another's name",
            "s3",
            resource_created("s3:tea", "s1", "Tea"),
            Forbidden,
        ),
        (
            "a resource outside the namespace",
            "s3",
            resource_created("s1:tea", "s3", "Tea"),
            Forbidden,
        ),
        (
            "a resource that exists",
            "s1",
            resource_created("s1:beans", "s1", "Beans"),
            Invalid,
        ),
        (
            "a resource with a hidden name (refused where it is entered)",
            "s1",
            resource_created("s1:tea", "s1", "T\u{202E}ea"),
            Allowed,
        ),
        (
            "a resource by the hub",
            "hub",
            resource_created("s1:tea", "s1", "Tea"),
            Forbidden,
        ),
        (
            "a stock pool",
            "s1",
            pool_created("s1:mugs", "s1:mugs", "s1", None),
            Allowed,
        ),
        (
            "a slot pool",
            "s1",
            pool_created("s1:class-1", "s1:class", "s1", Some((AT, AT + 1))),
            Allowed,
        ),
        (
            "a ghost pool",
            "s3",
            pool_created("s3:ghost", "s3:no-such-resource", "s3", None),
            Invalid,
        ),
        (
            "a pool of another's resource",
            "s3",
            pool_created("s3:beans", "s1:beans", "s3", None),
            Forbidden,
        ),
        (
            "a second stock pool",
            "s1",
            pool_created("s1:beans-2", "s1:beans", "s1", None),
            Invalid,
        ),
        (
            "a slot pool without times",
            "s1",
            pool_created("s1:class-2", "s1:class", "s1", None),
            Invalid,
        ),
        (
            "a slot pool ending first",
            "s1",
            pool_created("s1:class-3", "s1:class", "s1", Some((AT, AT))),
            Invalid,
        ),
        (
            "a pool that exists",
            "s1",
            pool_created("s1:beans", "s1:mugs", "s1", None),
            Invalid,
        ),
        (
            "a pool of absurd capacity",
            "s1",
            EventBody::PoolCreated {
                id: pool("s1:mugs"),
                resource_id: ResourceId::parse("s1:mugs").expect("id"),
                owner: p("s1"),
                capacity: -1,
                starts_at_ms: None,
                ends_at_ms: None,
            },
            Invalid,
        ),
        // Stock and units.
        (
            "a restock",
            "s1",
            EventBody::PoolAdjusted {
                pool: pool("s1:beans"),
                delta: 5,
            },
            Allowed,
        ),
        (
            "another's restock",
            "s3",
            EventBody::PoolAdjusted {
                pool: pool("s1:beans"),
                delta: 5,
            },
            Forbidden,
        ),
        (
            "a restock beyond the range",
            "s1",
            EventBody::PoolAdjusted {
                pool: pool("s1:beans"),
                delta: i64::MAX,
            },
            Invalid,
        ),
        (
            "a shrink below zero",
            "s1",
            EventBody::PoolAdjusted {
                pool: pool("s1:beans"),
                delta: -11,
            },
            Invalid,
        ),
        (
            "a grant",
            "s1",
            EventBody::AllotmentGranted {
                pool: pool("s1:beans"),
                to: p("hub"),
                units: 6,
            },
            Allowed,
        ),
        (
            "a grant beyond what is held",
            "s1",
            EventBody::AllotmentGranted {
                pool: pool("s1:beans"),
                to: p("hub"),
                units: 7,
            },
            Invalid,
        ),
        (
            "a grant of another's pool",
            "s3",
            EventBody::AllotmentGranted {
                pool: pool("s1:beans"),
                to: p("s3"),
                units: 1,
            },
            Forbidden,
        ),
        (
            "a grant to itself",
            "s1",
            EventBody::AllotmentGranted {
                pool: pool("s1:beans"),
                to: p("s1"),
                units: 1,
            },
            Invalid,
        ),
        (
            "a grant to a stranger",
            "s1",
            EventBody::AllotmentGranted {
                pool: pool("s1:beans"),
                to: p("s9"),
                units: 1,
            },
            Invalid,
        ),
        (
            "a negative grant",
            "s1",
            EventBody::AllotmentGranted {
                pool: pool("s1:beans"),
                to: p("hub"),
                units: -1,
            },
            Invalid,
        ),
        (
            "a recall",
            "s1",
            EventBody::AllotmentRecalled {
                pool: pool("s1:beans"),
                from: p("s3"),
                units: 1,
            },
            Allowed,
        ),
        (
            "another's recall",
            "s2",
            EventBody::AllotmentRecalled {
                pool: pool("s1:beans"),
                from: p("s3"),
                units: 1,
            },
            Forbidden,
        ),
        (
            "a return",
            "s3",
            EventBody::AllotmentReturned {
                pool: pool("s1:beans"),
                units: 1,
                hub_seq: None,
            },
            Allowed,
        ),
        (
            "a negative return",
            "s3",
            EventBody::AllotmentReturned {
                pool: pool("s1:beans"),
                units: -1000,
                hub_seq: None,
            },
            Invalid,
        ),
        (
            "a return of more than held",
            "s3",
            EventBody::AllotmentReturned {
                pool: pool("s1:beans"),
                units: 1001,
                hub_seq: None,
            },
            Invalid,
        ),
        (
            "a return by the owner",
            "s1",
            EventBody::AllotmentReturned {
                pool: pool("s1:beans"),
                units: 1,
                hub_seq: None,
            },
            Forbidden,
        ),
        (
            "a return of an unknown pool",
            "s3",
            EventBody::AllotmentReturned {
                pool: pool("s9:x"),
                units: 1,
                hub_seq: None,
            },
            Invalid,
        ),
        (
            "a credit of units sent",
            "s3",
            EventBody::AllotmentCredited {
                pool: pool("s1:beans"),
                from: p("s1"),
                units: 2,
                hub_seq: 4,
            },
            Allowed,
        ),
        (
            "a credit of units never sent",
            "s3",
            EventBody::AllotmentCredited {
                pool: pool("s1:beans"),
                from: p("s1"),
                units: 3,
                hub_seq: 4,
            },
            Invalid,
        ),
        (
            "a credit from another",
            "s2",
            EventBody::AllotmentCredited {
                pool: pool("s1:beans"),
                from: p("s1"),
                units: 1,
                hub_seq: 4,
            },
            Invalid,
        ),
        // New bookings.
        (
            "a local booking",
            "s1",
            created(new(), "s1", "s1", S::Confirmed, vec![line("s1:beans", 6)]),
            Allowed,
        ),
        (
            "a local booking beyond what is held",
            "s1",
            created(new(), "s1", "s1", S::Confirmed, vec![line("s1:beans", 7)]),
            Invalid,
        ),
        (
            "a sale from an allotment",
            "s3",
            created(new(), "s3", "s3", S::Held, vec![line("s1:beans", 1)]),
            Allowed,
        ),
        (
            "a sale of 900,000 units",
            "s3",
            created(
                new(),
                "s3",
                "s3",
                S::Confirmed,
                vec![line("s1:beans", 900_000)],
            ),
            Invalid,
        ),
        (
            "a sale of -5 units",
            "s3",
            created(new(), "s3", "s3", S::Confirmed, vec![line("s1:beans", -5)]),
            Invalid,
        ),
        (
            "a sale charged to the owner",
            "s3",
            created(new(), "s3", "s1", S::Confirmed, vec![line("s1:beans", 1)]),
            Forbidden,
        ),
        (
            "a booking of an unknown pool",
            "s1",
            created(new(), "s1", "s1", S::Confirmed, vec![line("s1:none", 1)]),
            Invalid,
        ),
        (
            "a booking naming the wrong owner",
            "s2",
            EventBody::BookingCreated {
                id: new(),
                owner: p("s2"),
                requested_by: p("s2"),
                charged_to: p("s2"),
                channel: Channel::Staff,
                lines: vec![line("s1:beans", 1)],
                customer: ada(),
                state: S::Confirmed,
                expires_at_ms: None,
                hold_seconds: None,
                reason: None,
            },
            Invalid,
        ),
        (
            "a new booking that starts cancelled",
            "s1",
            created(new(), "s1", "s1", S::Cancelled, vec![line("s1:beans", 1)]),
            Invalid,
        ),
        (
            "a hold for two weeks",
            "s1",
            with_expiry(
                created(new(), "s1", "s1", S::Held, vec![line("s1:beans", 1)]),
                Some(AT + 14 * 86_400_000),
            ),
            Invalid,
        ),
        (
            "a hold without an end",
            "s1",
            with_expiry(
                created(new(), "s1", "s1", S::Held, vec![line("s1:beans", 1)]),
                None,
            ),
            Invalid,
        ),
        (
            "a hold ending at the far end of time",
            "s1",
            with_expiry(
                created(new(), "s1", "s1", S::Held, vec![line("s1:beans", 1)]),
                Some(i64::MAX),
            ),
            Invalid,
        ),
        (
            "a request",
            "s3",
            created(new(), "s3", "s1", S::Requested, vec![line("s1:beans", 2)]),
            Allowed,
        ),
        (
            "a request with a hold",
            "s3",
            with_hold_seconds(
                created(new(), "s3", "s1", S::Requested, vec![line("s1:beans", 2)]),
                3600,
            ),
            Allowed,
        ),
        (
            "a request in another's name",
            "s3",
            created(new(), "s2", "s1", S::Requested, vec![line("s1:beans", 2)]),
            Forbidden,
        ),
        (
            "a request to oneself",
            "s1",
            created(new(), "s1", "s1", S::Requested, vec![line("s1:beans", 2)]),
            Invalid,
        ),
        (
            "a request holding for 31 years",
            "s3",
            with_hold_seconds(
                created(new(), "s3", "s1", S::Requested, vec![line("s1:beans", 1)]),
                1_000_000_000,
            ),
            Invalid,
        ),
        (
            "a request holding for negative time",
            "s3",
            with_hold_seconds(
                created(new(), "s3", "s1", S::Requested, vec![line("s1:beans", 1)]),
                -100_000,
            ),
            Invalid,
        ),
        (
            "a request holding past i64",
            "s3",
            with_hold_seconds(
                created(new(), "s3", "s1", S::Requested, vec![line("s1:beans", 1)]),
                9_223_372_036_854_776,
            ),
            Invalid,
        ),
        (
            "a request waiting for two days",
            "s3",
            with_expiry(
                created(new(), "s3", "s1", S::Requested, vec![line("s1:beans", 1)]),
                Some(AT + 2 * 86_400_000),
            ),
            Invalid,
        ),
        (
            "a request from the hub",
            "hub",
            created(new(), "hub", "s1", S::Requested, vec![line("s1:beans", 1)]),
            Allowed,
        ),
        (
            "a sale from the hub's allotment",
            "hub",
            created(new(), "hub", "hub", S::Confirmed, vec![line("s1:beans", 3)]),
            Allowed,
        ),
        (
            "a sale beyond the hub's allotment",
            "hub",
            created(new(), "hub", "hub", S::Confirmed, vec![line("s1:beans", 4)]),
            Invalid,
        ),
        // Decisions on requests.
        (
            "the owner confirms a request",
            "s1",
            created(
                booking(REQUEST_BY_HUB),
                "hub",
                "s1",
                S::Confirmed,
                vec![line("s1:beans", 2)],
            ),
            Allowed,
        ),
        (
            "the owner holds a request",
            "s1",
            created(
                booking(REQUEST_BY_HUB),
                "hub",
                "s1",
                S::Held,
                vec![line("s1:beans", 2)],
            ),
            Allowed,
        ),
        (
            "the owner rejects a request",
            "s1",
            created(
                booking(REQUEST_BY_HUB),
                "hub",
                "s1",
                S::Rejected,
                vec![line("s1:beans", 2)],
            ),
            Allowed,
        ),
        (
            "a decision that changes the lines",
            "s1",
            created(
                booking(REQUEST_BY_HUB),
                "hub",
                "s1",
                S::Confirmed,
                vec![line("s1:beans", 1)],
            ),
            Invalid,
        ),
        (
            "a decision by another store",
            "s3",
            created(
                booking(REQUEST_BY_HUB),
                "hub",
                "s1",
                S::Confirmed,
                vec![line("s1:beans", 2)],
            ),
            Forbidden,
        ),
        (
            "a decision cancelling outright",
            "s1",
            created(
                booking(REQUEST_BY_HUB),
                "hub",
                "s1",
                S::Cancelled,
                vec![line("s1:beans", 2)],
            ),
            Invalid,
        ),
        (
            "deciding twice",
            "s1",
            created(
                booking(DECIDED_FOR_S3),
                "s3",
                "s1",
                S::Rejected,
                vec![line("s1:beans", 1)],
            ),
            Invalid,
        ),
        (
            "re-requesting a confirmed booking to expire it",
            "s3",
            with_expiry(
                created(
                    booking(CONFIRMED_BY_S1),
                    "s3",
                    "s1",
                    S::Requested,
                    vec![line("s1:beans", 1)],
                ),
                Some(AT - 1),
            ),
            Forbidden,
        ),
        // Changes to bookings.
        (
            "confirming one's own hold",
            "s1",
            EventBody::BookingConfirmed {
                id: booking(HELD_BY_S1),
                by: None,
            },
            Allowed,
        ),
        (
            "confirming one's own twice",
            "s1",
            EventBody::BookingConfirmed {
                id: booking(CONFIRMED_BY_S1),
                by: None,
            },
            Invalid,
        ),
        (
            "marking one's own confirmed booking a no-show, named",
            "s1",
            EventBody::BookingNoShow {
                id: booking(CONFIRMED_BY_S1),
                by: Some("Alice".into()),
            },
            Allowed,
        ),
        (
            "marking a hold a no-show",
            "s1",
            EventBody::BookingNoShow {
                id: booking(HELD_BY_S1),
                by: None,
            },
            Invalid,
        ),
        (
            "a staff name longer than any store accepts",
            "s1",
            EventBody::BookingConfirmed {
                id: booking(HELD_BY_S1),
                by: Some("x".repeat(101)),
            },
            Invalid,
        ),
        (
            "a staff name with text-direction characters",
            "s1",
            EventBody::BookingConfirmed {
                id: booking(HELD_BY_S1),
                by: Some("Ali\u{202E}ce".into()),
            },
            Invalid,
        ),
        (
            "fulfilling a hold",
            "s1",
            EventBody::BookingFulfilled {
                id: booking(HELD_BY_S1),
                by: None,
            },
            Invalid,
        ),
        (
            "expiring one's own hold",
            "s1",
            EventBody::BookingExpired {
                id: booking(HELD_BY_S1),
                reason: "ran out".into(),
            },
            Allowed,
        ),
        (
            "cancelling a fulfilled sale to free its units",
            "s3",
            EventBody::BookingCancelled {
                id: booking(S3_FULFILLED_SALE),
                by: None,
            },
            Invalid,
        ),
        (
            "expiring a fulfilled sale to free its units",
            "s3",
            EventBody::BookingExpired {
                id: booking(S3_FULFILLED_SALE),
                reason: "x".into(),
            },
            Invalid,
        ),
        (
            "the owner fulfils a sale fulfilled already",
            "s1",
            EventBody::BookingFulfilled {
                id: booking(S3_FULFILLED_SALE),
                by: None,
            },
            Allowed,
        ),
        (
            "confirming another's",
            "s3",
            EventBody::BookingConfirmed {
                id: booking(CONFIRMED_BY_S1),
                by: None,
            },
            Forbidden,
        ),
        (
            "the owner fulfils a grantee's sale",
            "s1",
            EventBody::BookingFulfilled {
                id: booking(S3_CANCELLED_SALE),
                by: None,
            },
            Allowed,
        ),
        (
            "fulfilling one's cancelled sale",
            "s3",
            EventBody::BookingFulfilled {
                id: booking(S3_CANCELLED_SALE),
                by: None,
            },
            Invalid,
        ),
        (
            "giving up on one's cancelled sale",
            "s3",
            EventBody::BookingExpired {
                id: booking(S3_CANCELLED_SALE),
                reason: "x".into(),
            },
            Allowed,
        ),
        (
            "cancelling one's own",
            "s1",
            EventBody::BookingCancelled {
                id: booking(CONFIRMED_BY_S1),
                by: None,
            },
            Allowed,
        ),
        (
            "the owner cancelling a grantee's sale",
            "s1",
            EventBody::BookingCancelled {
                id: booking(S3_CANCELLED_SALE),
                by: None,
            },
            Forbidden,
        ),
        (
            "the requester gives up",
            "s3",
            EventBody::BookingExpired {
                id: booking(DECIDED_FOR_S3),
                reason: "gave up".into(),
            },
            Allowed,
        ),
        (
            "a stranger expires a booking",
            "s2",
            EventBody::BookingExpired {
                id: booking(DECIDED_FOR_S3),
                reason: "gone".into(),
            },
            Forbidden,
        ),
        (
            "an expiry with an endless reason",
            "s1",
            EventBody::BookingExpired {
                id: booking(CONFIRMED_BY_S1),
                reason: "x".repeat(501),
            },
            Invalid,
        ),
        (
            "the requester asks to cancel",
            "s3",
            EventBody::BookingCancelRequested {
                id: booking(DECIDED_FOR_S3),
            },
            Allowed,
        ),
        (
            "the charged party asks itself",
            "s1",
            EventBody::BookingCancelRequested {
                id: booking(CONFIRMED_BY_S1),
            },
            Forbidden,
        ),
        (
            "a change to an unknown booking",
            "s1",
            EventBody::BookingCancelled {
                id: new(),
                by: None,
            },
            Invalid,
        ),
        // The hub's words and a store's records.
        (
            "a store introducing a location",
            "s3",
            EventBody::LocationJoined {
                location: crate::LocationId::parse("s9").expect("id"),
                name: "S9".into(),
            },
            Forbidden,
        ),
        (
            "the hub introducing a location",
            "hub",
            EventBody::LocationJoined {
                location: crate::LocationId::parse("s9").expect("id"),
                name: "S9".into(),
            },
            Allowed,
        ),
        (
            "a store relaying",
            "s3",
            EventBody::Relayed {
                event: Box::new(
                    event(
                        "s1",
                        EventBody::BookingConfirmed {
                            id: booking(CONFIRMED_BY_S1),
                            by: None,
                        },
                    )
                    .0,
                ),
            },
            Forbidden,
        ),
        (
            "a store's observation",
            "s3",
            EventBody::Observed {
                hub_seq: 3,
                event: Box::new(
                    event(
                        "s1",
                        EventBody::BookingConfirmed {
                            id: booking(CONFIRMED_BY_S1),
                            by: None,
                        },
                    )
                    .0,
                ),
            },
            Allowed,
        ),
        (
            "an observation of oneself",
            "s1",
            EventBody::Observed {
                hub_seq: 3,
                event: Box::new(
                    event(
                        "s1",
                        EventBody::BookingConfirmed {
                            id: booking(CONFIRMED_BY_S1),
                            by: None,
                        },
                    )
                    .0,
                ),
            },
            Invalid,
        ),
        (
            "a set-aside record",
            "s1",
            EventBody::InboxSetAside {
                hub_seq: 9,
                origin: "s3".into(),
                kind: "pool_created".into(),
                reason: "names unknown resource".into(),
            },
            Allowed,
        ),
        (
            "a set-aside record at seq 0",
            "s1",
            EventBody::InboxSetAside {
                hub_seq: 0,
                origin: "s3".into(),
                kind: "pool_created".into(),
                reason: "x".into(),
            },
            Invalid,
        ),
        (
            "a set-aside record of nobody",
            "s1",
            EventBody::InboxSetAside {
                hub_seq: 9,
                origin: "Nobody!".into(),
                kind: "pool_created".into(),
                reason: "x".into(),
            },
            Invalid,
        ),
        (
            "a set-aside record with a hidden kind",
            "s1",
            EventBody::InboxSetAside {
                hub_seq: 9,
                origin: "s3".into(),
                kind: "pool\n2026 ERROR".into(),
                reason: "x".into(),
            },
            Invalid,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, author, body, expected) in cases {
        let got = verdict(author, body);
        if got != expected {
            wrong.push(format!(
                "{what} by {author}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn consuming_again_needs_the_units() {
    // The owner's request, still undecided, confirmed by its owner in one
    // step: units it must hold.
    let mut w = world();
    w.available.insert(("s1:beans".into(), "s1".into()), 1);
    let (e, body) = event(
        "s1",
        EventBody::BookingConfirmed {
            id: booking(REQUEST_BY_HUB),
            by: None,
        },
    );
    assert!(matches!(
        check(&e, &body, &w).expect("lookups"),
        Err(Denied::Invalid(_))
    ));
}

#[test]
fn a_receiver_that_does_not_keep_a_ledger_leaves_it_to_the_hub() {
    struct Blind(World);
    impl Facts for Blind {
        type Error = std::convert::Infallible;
        fn resource(&self, id: &ResourceId) -> Result<Option<ResourceFacts>, Self::Error> {
            self.0.resource(id)
        }
        fn pool(&self, id: &PoolId) -> Result<Option<PoolFacts>, Self::Error> {
            self.0.pool(id)
        }
        fn booking(&self, id: &BookingId) -> Result<Option<BookingFacts>, Self::Error> {
            self.0.booking(id)
        }
        fn available(&self, _: &PoolId, _: &ParticipantId) -> Result<Option<i64>, Self::Error> {
            Ok(None)
        }
        fn in_flight(
            &self,
            _: &PoolId,
            _: &ParticipantId,
            _: &ParticipantId,
        ) -> Result<Option<i64>, Self::Error> {
            Ok(None)
        }
        fn may_receive(&self, _: &ParticipantId) -> Result<Option<bool>, Self::Error> {
            Ok(None)
        }
    }
    let blind = Blind(world());
    let (e, body) = event(
        "s3",
        created(
            BookingId::generate(),
            "s3",
            "s3",
            BookingState::Confirmed,
            vec![line("s1:beans", 5)],
        ),
    );
    assert_eq!(check(&e, &body, &blind).expect("lookups"), Ok(()));
    // What it does know still counts: the author and the values.
    let (e, body) = event(
        "s3",
        created(
            BookingId::generate(),
            "s3",
            "s1",
            BookingState::Confirmed,
            vec![line("s1:beans", 5)],
        ),
    );
    assert!(matches!(
        check(&e, &body, &blind).expect("lookups"),
        Err(Denied::Forbidden(_))
    ));
}
