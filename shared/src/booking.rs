//! Bookings and their state machine (docs/ARCHITECTURE.md, section 3), as pure functions.
//!
//! ```text
//! requested --> held | confirmed | rejected | expired
//! held      --> confirmed | cancelled | expired
//! confirmed --> fulfilled | cancelled | expired (*)
//! rejected  --> expired (*)
//! ```
//! (*) only when the requester of a remote booking gave up before the owner's
//! decision reached it: [`Action::RequesterGaveUp`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::PoolId;
use crate::limits::{
    BOOKING_LINES_MAX, CUSTOMER_EMAIL_MAX_CHARS, CUSTOMER_NAME_MAX_CHARS, CUSTOMER_PHONE_MAX_CHARS,
    LINE_QUANTITY_MAX,
};

/// Where a booking is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingState {
    Requested,
    Held,
    Confirmed,
    Rejected,
    Cancelled,
    Fulfilled,
    Expired,
    /// A confirmed slot booking whose customer did not come; marked by
    /// staff once the slot has started.
    NoShow,
}

impl BookingState {
    pub const ALL: [Self; 8] = [
        Self::Requested,
        Self::Held,
        Self::Confirmed,
        Self::Rejected,
        Self::Cancelled,
        Self::Fulfilled,
        Self::Expired,
        Self::NoShow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::Fulfilled => "fulfilled",
            Self::Expired => "expired",
            Self::NoShow => "no_show",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Whether a booking in this state consumes units of its pools (the
    /// states invariant I1 counts).
    pub fn consumes_units(self) -> bool {
        // A no-show keeps its units: the slot they were for has begun, and
        // nobody else can use them now.
        matches!(
            self,
            Self::Held | Self::Confirmed | Self::Fulfilled | Self::NoShow
        )
    }

    /// Whether nothing can happen to the booking any more, not even a
    /// requester's expiry.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Cancelled | Self::Fulfilled | Self::Expired)
    }

    /// Whether the booking is still open: waiting, or booked and not yet
    /// handed over or past.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Requested | Self::Held | Self::Confirmed)
    }
}

impl fmt::Display for BookingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that moves a booking from one state to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// The owner accepts a request as a pending hold.
    Hold,
    /// The owner (or holder of the allotment) confirms.
    Confirm,
    /// The owner refuses a request (no capacity, unknown pool, ...).
    Reject,
    /// Staff or the customer cancel.
    Cancel,
    /// The goods were handed over or the service took place.
    Fulfil,
    /// A pending hold ran out, or a request reached its owner too late.
    Expire,
    /// Staff mark that the customer of a started slot did not come.
    NoShow,
    /// The requester had no decision by `expires_at + skew_margin` and told the
    /// customer the booking expired; that verdict wins over any decision
    /// except `fulfilled`.
    RequesterGaveUp,
}

impl Action {
    pub const ALL: [Self; 8] = [
        Self::Hold,
        Self::Confirm,
        Self::Reject,
        Self::Cancel,
        Self::Fulfil,
        Self::Expire,
        Self::NoShow,
        Self::RequesterGaveUp,
    ];

    pub fn verb(self) -> &'static str {
        match self {
            Self::Hold => "hold",
            Self::Confirm => "confirm",
            Self::Reject => "reject",
            Self::Cancel => "cancel",
            Self::Fulfil => "fulfil",
            Self::Expire => "expire",
            Self::NoShow => "mark as a no-show",
            Self::RequesterGaveUp => "expire on the requester's word",
        }
    }
}

/// A transition the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a booking that is {from}", action.verb())]
pub struct TransitionError {
    pub from: BookingState,
    pub action: Action,
}

/// The state after `action`, or why it is not allowed.
pub fn transition(from: BookingState, action: Action) -> Result<BookingState, TransitionError> {
    use Action as A;
    use BookingState as S;
    let to = match (from, action) {
        (S::Requested, A::Hold) => S::Held,
        (S::Requested | S::Held, A::Confirm) => S::Confirmed,
        (S::Requested, A::Reject) => S::Rejected,
        (S::Held | S::Confirmed, A::Cancel) => S::Cancelled,
        (S::Confirmed, A::Fulfil) => S::Fulfilled,
        (S::Requested | S::Held, A::Expire) => S::Expired,
        (S::Confirmed, A::NoShow) => S::NoShow,
        // The requester's word wins over every outcome but a physical one.
        (
            S::Requested | S::Held | S::Confirmed | S::Rejected | S::Cancelled | S::NoShow,
            A::RequesterGaveUp,
        ) => S::Expired,
        _ => return Err(TransitionError { from, action }),
    };
    Ok(to)
}

/// What the owner of a pool does with a request that reaches it: decided
/// at once, on receipt (docs/ARCHITECTURE.md, section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerDecision {
    Hold { expires_at_ms: i64 },
    Confirm,
    Reject { reason: String },
    Expire { reason: String },
}

impl OwnerDecision {
    pub fn state(&self) -> BookingState {
        match self {
            Self::Hold { .. } => BookingState::Held,
            Self::Confirm => BookingState::Confirmed,
            Self::Reject { .. } => BookingState::Rejected,
            Self::Expire { .. } => BookingState::Expired,
        }
    }
}

/// The owner's decision on a request that expires at `expires_at_ms`, when
/// its own allotment can (`fits`) or cannot hold it.
pub fn decide_request(
    now_ms: i64,
    expires_at_ms: Option<i64>,
    hold_seconds: Option<i64>,
    fits: Result<(), String>,
) -> OwnerDecision {
    if expires_at_ms.is_some_and(|at| now_ms > at) {
        return OwnerDecision::Expire {
            reason: "the request reached the owner after it expired".into(),
        };
    }
    match (fits, hold_seconds) {
        (Err(reason), _) => OwnerDecision::Reject { reason },
        (Ok(()), Some(seconds)) => OwnerDecision::Hold {
            // Requests are checked for their hold before they get here;
            // saturating keeps a slip from wrapping to the past.
            expires_at_ms: now_ms.saturating_add(seconds.saturating_mul(1000)),
        },
        (Ok(()), None) => OwnerDecision::Confirm,
    }
}

/// What a requester records when it learns that its booking is `remote` at
/// the participant that decides it; `None` to change nothing.
///
/// Until it has an answer it adopts whatever the owner says. Once it gave
/// up (`expired`), its word stands, except against `fulfilled`: the goods
/// left the shelf, and the requester adopts that.
pub fn requester_adopts(local: BookingState, remote: BookingState) -> Option<BookingState> {
    use BookingState as S;
    match (local, remote) {
        (l, r) if l == r => None,
        // Goods handed over stay handed over, whatever was said meanwhile.
        (S::Expired | S::Cancelled | S::NoShow, S::Fulfilled) => Some(S::Fulfilled),
        // A requester's expiry meeting a cancellation: both mean no booking;
        // the customer was told "expired", so all settle on that.
        (S::Cancelled, S::Expired) => Some(S::Expired),
        (S::Expired | S::Cancelled | S::Fulfilled | S::NoShow, _) => None,
        (_, r) => Some(r),
    }
}

/// Whether a requester that has had no decision should give up now.
pub fn requester_gives_up(
    state: BookingState,
    now_ms: i64,
    expires_at_ms: Option<i64>,
    skew_margin_ms: i64,
) -> bool {
    state == BookingState::Requested && expires_at_ms.is_some_and(|at| now_ms > at + skew_margin_ms)
}

/// How a booking reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Kiosk,
    Staff,
    Web,
    Api,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kiosk => "kiosk",
            Self::Staff => "staff",
            Self::Web => "web",
            Self::Api => "api",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Kiosk, Self::Staff, Self::Web, Self::Api]
            .into_iter()
            .find(|c| c.as_str() == value)
    }
}

/// One line of a booking: some units of one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub pool_id: PoolId,
    /// 1 to 1,000,000 units.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub quantity: i64,
}

/// Who the booking is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Not blank, and without control or text-direction characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 40)]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 254)]
    pub email: Option<String>,
}

/// Why the lines or the customer of a new booking are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingInputError {
    #[error("a booking needs at least one line")]
    NoLines,
    #[error("a booking has at most {max} lines, this one has {got}")]
    TooManyLines { max: usize, got: usize },
    #[error("quantity for pool {pool} must be between 1 and {max}, got {got}")]
    Quantity { pool: PoolId, got: i64, max: i64 },
    #[error("pool {0} appears in more than one line; put its units in one line")]
    DuplicatePool(PoolId),
    #[error("customer {field} must not be empty")]
    EmptyField { field: &'static str },
    #[error("customer {field} is longer than {max} characters")]
    FieldTooLong { field: &'static str, max: usize },
    #[error("customer email must look like name@domain")]
    Email,
    #[error("customer {field} must not contain control or text-direction characters")]
    ControlCharacter { field: &'static str },
}

/// Checks lines and customer of a new booking as a person or a client
/// enters it; the pools themselves are checked by whoever knows them.
pub fn validate_request(lines: &[Line], customer: &Customer) -> Result<(), BookingInputError> {
    validate_booking(lines, customer)?;
    for (field, value) in [
        ("name", Some(customer.name.as_str())),
        ("phone", customer.phone.as_deref()),
        ("email", customer.email.as_deref()),
    ] {
        if value.is_some_and(has_hidden_characters) {
            return Err(BookingInputError::ControlCharacter { field });
        }
    }
    Ok(())
}

/// The checks of [`validate_request`] that every booking event has always
/// met, which receivers hold events to. Hidden characters are refused
/// where a booking is entered and neutralised where it is shown, but not
/// refused in events: a store that took one in before it was refused has
/// it in its log for good, and refusing that event would stop its sync.
pub fn validate_booking(lines: &[Line], customer: &Customer) -> Result<(), BookingInputError> {
    if lines.is_empty() {
        return Err(BookingInputError::NoLines);
    }
    if lines.len() > BOOKING_LINES_MAX {
        return Err(BookingInputError::TooManyLines {
            max: BOOKING_LINES_MAX,
            got: lines.len(),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(lines.len());
    for line in lines {
        if !(1..=LINE_QUANTITY_MAX).contains(&line.quantity) {
            return Err(BookingInputError::Quantity {
                pool: line.pool_id.clone(),
                got: line.quantity,
                max: LINE_QUANTITY_MAX,
            });
        }
        if !seen.insert(&line.pool_id) {
            return Err(BookingInputError::DuplicatePool(line.pool_id.clone()));
        }
    }
    check_text("name", Some(&customer.name), CUSTOMER_NAME_MAX_CHARS)?;
    check_text("phone", customer.phone.as_deref(), CUSTOMER_PHONE_MAX_CHARS)?;
    check_text("email", customer.email.as_deref(), CUSTOMER_EMAIL_MAX_CHARS)?;
    if let Some(email) = &customer.email {
        let ok = email
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if !ok {
            return Err(BookingInputError::Email);
        }
    }
    Ok(())
}

fn check_text(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<(), BookingInputError> {
    let Some(value) = value else { return Ok(()) };
    if value.trim().is_empty() {
        return Err(BookingInputError::EmptyField { field });
    }
    if value.chars().count() > max {
        return Err(BookingInputError::FieldTooLong { field, max });
    }
    Ok(())
}

/// Whether `text` holds characters that do not belong in a name a person
/// reads: control characters (NUL, ESC, newlines, ...), the text-direction
/// overrides and isolates that make text read differently from how it is
/// stored (U+202E and friends), and the line and paragraph separators.
/// Names, phone numbers and resource names are shown to staff as they are,
/// so these are refused when they come in, not filtered when shown.
pub fn has_hidden_characters(text: &str) -> bool {
    text.chars().any(is_hidden)
}

/// One character [`has_hidden_characters`] looks for.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{FEFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use BookingState as S;

    /// The whole allowed table, written out once more independently of
    /// `transition`, so a change to either shows up here.
    const ALLOWED: &[(BookingState, Action, BookingState)] = &[
        (S::Requested, A::Hold, S::Held),
        (S::Requested, A::Confirm, S::Confirmed),
        (S::Requested, A::Reject, S::Rejected),
        (S::Requested, A::Expire, S::Expired),
        (S::Requested, A::RequesterGaveUp, S::Expired),
        (S::Held, A::Confirm, S::Confirmed),
        (S::Held, A::Cancel, S::Cancelled),
        (S::Held, A::Expire, S::Expired),
        (S::Held, A::RequesterGaveUp, S::Expired),
        (S::Confirmed, A::Fulfil, S::Fulfilled),
        (S::Confirmed, A::Cancel, S::Cancelled),
        (S::Confirmed, A::RequesterGaveUp, S::Expired),
        (S::Rejected, A::RequesterGaveUp, S::Expired),
        (S::Cancelled, A::RequesterGaveUp, S::Expired),
        (S::Confirmed, A::NoShow, S::NoShow),
        (S::NoShow, A::RequesterGaveUp, S::Expired),
    ];

    #[test]
    fn every_allowed_transition_reaches_its_state() {
        for &(from, action, to) in ALLOWED {
            assert_eq!(transition(from, action), Ok(to), "{from} --{action:?}-->");
        }
    }

    #[test]
    fn every_other_transition_is_refused_with_a_typed_error() {
        let mut refused = 0;
        for from in S::ALL {
            for action in A::ALL {
                if ALLOWED.iter().any(|&(f, a, _)| f == from && a == action) {
                    continue;
                }
                assert_eq!(
                    transition(from, action),
                    Err(TransitionError { from, action }),
                    "{from} --{action:?}--> must be refused"
                );
                refused += 1;
            }
        }
        assert_eq!(refused, S::ALL.len() * A::ALL.len() - ALLOWED.len());
    }

    #[test]
    fn the_owner_decides_a_request_at_once_on_receipt() {
        assert_eq!(
            decide_request(10, Some(20), None, Ok(())),
            OwnerDecision::Confirm
        );
        assert_eq!(
            decide_request(10, Some(20), Some(60), Ok(())),
            OwnerDecision::Hold {
                expires_at_ms: 60_010
            }
        );
        assert!(matches!(
            decide_request(10, Some(20), None, Err("full".into())),
            OwnerDecision::Reject { .. }
        ));
        assert!(matches!(
            decide_request(21, Some(20), None, Ok(())),
            OwnerDecision::Expire { .. }
        ));
    }

    #[test]
    fn a_requester_adopts_decisions_until_it_gives_up_and_then_only_fulfilment() {
        assert_eq!(
            requester_adopts(S::Requested, S::Confirmed),
            Some(S::Confirmed)
        );
        assert_eq!(
            requester_adopts(S::Requested, S::Rejected),
            Some(S::Rejected)
        );
        assert_eq!(
            requester_adopts(S::Confirmed, S::Fulfilled),
            Some(S::Fulfilled)
        );
        assert_eq!(requester_adopts(S::Held, S::Expired), Some(S::Expired));
        assert_eq!(requester_adopts(S::Expired, S::Confirmed), None);
        assert_eq!(requester_adopts(S::Expired, S::Expired), None);
        assert_eq!(
            requester_adopts(S::Expired, S::Fulfilled),
            Some(S::Fulfilled)
        );
        assert_eq!(requester_adopts(S::Cancelled, S::Confirmed), None);
        assert_eq!(
            requester_adopts(S::Cancelled, S::Fulfilled),
            Some(S::Fulfilled)
        );
        assert_eq!(requester_adopts(S::Cancelled, S::Expired), Some(S::Expired));
        assert_eq!(requester_adopts(S::Fulfilled, S::Cancelled), None);
        assert_eq!(requester_adopts(S::Confirmed, S::NoShow), Some(S::NoShow));
        assert_eq!(requester_adopts(S::Expired, S::NoShow), None);
    }

    #[test]
    fn a_requester_gives_up_only_after_the_skew_margin() {
        assert!(!requester_gives_up(S::Requested, 130, Some(100), 30));
        assert!(requester_gives_up(S::Requested, 131, Some(100), 30));
        assert!(!requester_gives_up(S::Confirmed, 1_000, Some(100), 30));
        assert!(!requester_gives_up(S::Requested, 1_000, None, 30));
    }

    #[test]
    fn a_fulfilled_booking_survives_the_requesters_expiry() {
        assert!(transition(S::Fulfilled, A::RequesterGaveUp).is_err());
    }

    #[test]
    fn only_held_confirmed_fulfilled_and_no_shows_consume_units() {
        let consuming: Vec<_> = S::ALL.into_iter().filter(|s| s.consumes_units()).collect();
        assert_eq!(
            consuming,
            vec![S::Held, S::Confirmed, S::Fulfilled, S::NoShow]
        );
    }

    #[test]
    fn refusals_read_as_sentences() {
        let err = transition(S::Cancelled, A::Confirm).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "cannot confirm a booking that is cancelled"
        );
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).expect("json"), format!("\"{s}\""));
        }
    }

    fn line(pool: &str, quantity: i64) -> Line {
        Line {
            pool_id: PoolId::parse(pool).expect("pool id"),
            quantity,
        }
    }

    fn customer(name: &str) -> Customer {
        Customer {
            name: name.into(),
            phone: None,
            email: None,
        }
    }

    #[test]
    fn booking_input_is_checked_before_any_pool_is_looked_at() {
        let ok = validate_request(&[line("p", 2)], &customer("Ada"));
        assert_eq!(ok, Ok(()));
        assert_eq!(
            validate_request(&[], &customer("Ada")),
            Err(BookingInputError::NoLines)
        );
        assert!(matches!(
            validate_request(&[line("p", 0)], &customer("Ada")),
            Err(BookingInputError::Quantity { got: 0, .. })
        ));
        assert!(matches!(
            validate_request(&[line("p", -3)], &customer("Ada")),
            Err(BookingInputError::Quantity { got: -3, .. })
        ));
        assert!(matches!(
            validate_request(&[line("p", 1), line("p", 1)], &customer("Ada")),
            Err(BookingInputError::DuplicatePool(_))
        ));
        let many: Vec<_> = (0..101).map(|i| line(&format!("p{i}"), 1)).collect();
        assert!(matches!(
            validate_request(&many, &customer("Ada")),
            Err(BookingInputError::TooManyLines { got: 101, .. })
        ));
        assert!(matches!(
            validate_request(&[line("p", 1)], &customer(&"x".repeat(201))),
            Err(BookingInputError::FieldTooLong { field: "name", .. })
        ));
        assert!(matches!(
            validate_request(&[line("p", 1)], &customer("  ")),
            Err(BookingInputError::EmptyField { field: "name" })
        ));
        for hidden in ["A\u{0}da", "\u{1b}[31mAda", "Ada\u{202E}nimda", "Ada\nBob"] {
            assert_eq!(
                validate_request(&[line("p", 1)], &customer(hidden)),
                Err(BookingInputError::ControlCharacter { field: "name" }),
                "{hidden:?}"
            );
        }
        assert_eq!(
            validate_request(&[line("p", 1)], &customer("Zoë O'Brien-Łukasz 李")),
            Ok(())
        );
        let mut bad_email = customer("Ada");
        bad_email.email = Some("nope".into());
        assert_eq!(
            validate_request(&[line("p", 1)], &bad_email),
            Err(BookingInputError::Email)
        );
    }
}
