//! Pure domain library shared by the edge node and the sync hub.
//!
//! What belongs here: ids that cannot be built invalid, the booking state
//! machine, availability arithmetic over allotments, the event envelope with
//! its canonical encoding and hash chain, the request and response types both
//! binaries speak, and the limits that bound them. What does not: anything
//! that touches a disk, a socket or a clock. Callers pass the time in.

pub mod authz;
pub mod availability;
pub mod booking;
pub mod event;
pub mod html;
pub mod ids;
pub mod json;
pub mod limits;
pub mod protocol;
pub mod schema;
pub mod signin;
pub mod signing;
pub mod slots;

pub use availability::{Holding, InsufficientCapacity};
pub use booking::{Action, BookingState, Channel, Customer, Line, TransitionError};
pub use event::{ChainHead, ChainVerdict, Event, EventBody, Hash, ResourceKind, SealedEvent};
pub use ids::{BookingId, IdError, LocationId, ParticipantId, PoolId, ResourceId};
