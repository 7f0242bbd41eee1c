//! OpenAPI schemas of the types whose JSON form is a checked string: the
//! ids and the event hash. Their `Serialize` writes a plain string, so their
//! schema is a string with the pattern their parser enforces; the derived
//! schemas of the request and response types refer to these by name.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::event::Hash;
use crate::ids::{BookingId, LocationId, ParticipantId, PoolId, ResourceId};

/// A string schema with a description and, where the parser has one, the
/// pattern it accepts.
fn string(description: &str, pattern: Option<&str>, format: Option<KnownFormat>) -> RefOr<Schema> {
    let mut builder = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description));
    if let Some(pattern) = pattern {
        builder = builder.pattern(Some(pattern));
    }
    if let Some(format) = format {
        builder = builder.format(Some(SchemaFormat::KnownFormat(format)));
    }
    RefOr::T(Schema::Object(builder.build()))
}

macro_rules! string_schema {
    ($name:ident, $description:expr, $pattern:expr, $format:expr) => {
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string($description, $pattern, $format)
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

string_schema!(
    LocationId,
    "A location id; never `hub`.",
    Some(crate::ids::LOCATION_PATTERN),
    None
);
string_schema!(
    ParticipantId,
    "Who authored an event: `hub` or a location id.",
    Some("^(hub|[a-z0-9][a-z0-9-]{0,62})$"),
    None
);
string_schema!(
    ResourceId,
    "A resource id: a UUID or `location:slug` in its location's namespace.",
    Some(crate::ids::CATALOG_PATTERN),
    None
);
string_schema!(
    PoolId,
    "A pool id: a UUID or `location:slug` in its location's namespace.",
    Some(crate::ids::CATALOG_PATTERN),
    None
);
string_schema!(
    BookingId,
    "A booking id: a UUID (v7 when this system made it).",
    None,
    Some(KnownFormat::Uuid)
);
string_schema!(
    Hash,
    "A SHA-256 digest as 64 lowercase hex digits.",
    Some("^[0-9a-f]{64}$"),
    None
);
