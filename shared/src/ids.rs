//! Identifiers that cannot be built invalid (parse, don't validate).
//!
//! Every id type has a fallible constructor and a `Deserialize` that goes
//! through it, so a value of one of these types is always well-formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::limits::ID_MAX_CHARS;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} {value:?} must match {pattern}")]
    Pattern {
        what: &'static str,
        value: String,
        pattern: &'static str,
    },
    #[error("{what} {value:?} is reserved")]
    Reserved { what: &'static str, value: String },
    #[error("{what} {value:?} is not a UUID")]
    NotUuid { what: &'static str, value: String },
}

/// Shortens untrusted input before it is echoed in an error message.
fn excerpt(value: &str) -> String {
    value.chars().take(70).collect()
}

/// The id of the central hub as a participant.
pub const HUB: &str = "hub";

pub(crate) const LOCATION_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";

/// A location id: `^[a-z0-9][a-z0-9-]{0,62}$`, and never `hub`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocationId(String);

impl LocationId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        const WHAT: &str = "location id";
        let bad = || IdError::Pattern {
            what: WHAT,
            value: excerpt(value),
            pattern: LOCATION_PATTERN,
        };
        let mut chars = value.chars();
        let first = chars.next().ok_or(IdError::Empty { what: WHAT })?;
        if value.len() > 63 {
            return Err(IdError::TooLong {
                what: WHAT,
                max: 63,
            });
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(bad());
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(bad());
        }
        if value == HUB {
            return Err(IdError::Reserved {
                what: WHAT,
                value: value.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A participant: the hub or one location. Written as `hub` or the location id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ParticipantId {
    Hub,
    Location(LocationId),
}

impl ParticipantId {
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if value == HUB {
            Ok(Self::Hub)
        } else {
            LocationId::parse(value).map(Self::Location)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Hub => HUB,
            Self::Location(id) => id.as_str(),
        }
    }
}

impl From<LocationId> for ParticipantId {
    fn from(id: LocationId) -> Self {
        Self::Location(id)
    }
}

pub(crate) const CATALOG_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$";

fn parse_catalog_id(what: &'static str, value: &str) -> Result<String, IdError> {
    let mut chars = value.chars();
    let first = chars.next().ok_or(IdError::Empty { what })?;
    if value.len() > ID_MAX_CHARS {
        return Err(IdError::TooLong {
            what,
            max: ID_MAX_CHARS,
        });
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-');
    if !first.is_ascii_alphanumeric() || !chars.all(allowed) {
        return Err(IdError::Pattern {
            what,
            value: excerpt(value),
            pattern: CATALOG_PATTERN,
        });
    }
    Ok(value.to_owned())
}

/// Catalog ids are global, and stores choose them
/// offline, so each chooses only from its own namespace: a UUID, unique by
/// construction, or `location:slug` under its own location id. Two stores
/// can then never pick the same id, and none can take another's.
pub fn in_namespace_of(location: &LocationId, id: &str) -> bool {
    if id.len() == 36 && Uuid::try_parse(id).is_ok() {
        return true;
    }
    id.split_once(':')
        .is_some_and(|(prefix, slug)| prefix == location.as_str() && !slug.is_empty())
}

macro_rules! catalog_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, ": a UUIDv7 or a readable `location:slug`, matching `", "^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$", "`.")]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                parse_catalog_id($what, value).map(Self)
            }

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7().to_string())
            }

            /// Whether `location` may name a catalog entry of its own with
            /// this id; see [`in_namespace_of`].
            pub fn in_namespace_of(&self, location: &LocationId) -> bool {
                in_namespace_of(location, &self.0)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

catalog_id!(ResourceId, "resource id");
catalog_id!(PoolId, "pool id");

/// A booking id: a UUID, v7 when we make it, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BookingId(Uuid);

impl BookingId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        Uuid::parse_str(value)
            .map(Self)
            .map_err(|_| IdError::NotUuid {
                what: "booking id",
                value: excerpt(value),
            })
    }

    pub fn uuid(&self) -> Uuid {
        self.0
    }

    /// A short code a customer can read out at the counter: six characters
    /// of Crockford base32 from the random part of the id. Not unique on its
    /// own; staff find a booking by code among today's.
    pub fn short_code(&self) -> String {
        const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let bits = self.0.as_u128();
        (0..6)
            .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
            .collect()
    }
}

macro_rules! string_like {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_like!(LocationId);
string_like!(ParticipantId);
string_like!(ResourceId);
string_like!(PoolId);

impl fmt::Display for BookingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for BookingId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for BookingId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BookingId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_ids_follow_the_contract_pattern() {
        for ok in ["a", "berlin-mitte", "0", "store-42", &"a".repeat(63)] {
            assert!(LocationId::parse(ok).is_ok(), "{ok} should parse");
        }
        for bad in ["", "-a", "A", "a_b", "a b", "café", &"a".repeat(64), "hub"] {
            assert!(LocationId::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn the_hub_is_a_participant_but_not_a_location() {
        assert_eq!(ParticipantId::parse("hub"), Ok(ParticipantId::Hub));
        assert!(matches!(
            LocationId::parse("hub"),
            Err(IdError::Reserved { .. })
        ));
        let store = ParticipantId::parse("store-1").expect("valid");
        assert_eq!(store.as_str(), "store-1");
    }

    #[test]
    fn catalog_ids_accept_slugs_and_uuids_and_refuse_the_rest() {
        assert!(PoolId::parse("berlin:espresso-beans").is_ok());
        assert!(PoolId::parse(PoolId::generate().as_str()).is_ok());
        for bad in ["", ":x", "a/b", "a b", &"x".repeat(129), "ü"] {
            assert!(ResourceId::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        let ok: Result<LocationId, _> = serde_json::from_str("\"store-1\"");
        assert!(ok.is_ok());
        let bad: Result<LocationId, _> = serde_json::from_str("\"Store 1\"");
        assert!(bad.is_err());
        let booking: Result<BookingId, _> = serde_json::from_str("\"not-a-uuid\"");
        assert!(booking.is_err());
    }

    #[test]
    fn short_codes_are_six_unambiguous_characters() {
        let code = BookingId::generate().short_code();
        assert_eq!(code.len(), 6);
        assert!(
            code.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        );
        assert!(!code.contains(['I', 'L', 'O', 'U']));
    }

    #[test]
    fn a_location_names_catalog_entries_in_its_own_namespace_or_with_uuids() {
        let berlin = LocationId::parse("berlin").expect("location");
        let pool = |id: &str| PoolId::parse(id).expect("pool id");
        assert!(pool("berlin:beans").in_namespace_of(&berlin));
        assert!(pool("berlin:class:2026-11-23").in_namespace_of(&berlin));
        assert!(PoolId::generate().in_namespace_of(&berlin));
        assert!(!pool("beans").in_namespace_of(&berlin));
        assert!(!pool("berlin:").in_namespace_of(&berlin));
        assert!(!pool("paris:beans").in_namespace_of(&berlin));
        assert!(!pool("berlin-mitte:beans").in_namespace_of(&berlin));
        assert!(!pool("berlinx:beans").in_namespace_of(&berlin));
        // A UUID without its hyphens is a slug like any other.
        assert!(!pool("0190b1a2c3d47e8f9a0b1c2d3e4f5a6b").in_namespace_of(&berlin));
    }
}
