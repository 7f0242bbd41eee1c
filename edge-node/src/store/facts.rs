//! What this store knows of the things an inbox event names, for the
//! checks every receiver makes ([`shared::authz::check`]) before applying
//! what it pulls. A store keeps the ledger of its own units and of the
//! units it gave out; the ledgers of others it leaves to the hub, which
//! keeps them all.

use rusqlite::{Connection, OptionalExtension, params};
use shared::authz::{BookingFacts, Facts, PoolFacts, ResourceFacts};
use shared::{BookingId, ParticipantId, PoolId, ResourceId};

use super::{StoreError, StoreResult, queries};

/// The store's tables as `me` knows them, inside the writer's transaction.
#[derive(Debug)]
pub struct StoreFacts<'a> {
    pub conn: &'a Connection,
    pub me: &'a ParticipantId,
}

impl Facts for StoreFacts<'_> {
    type Error = StoreError;

    fn resource(&self, id: &ResourceId) -> StoreResult<Option<ResourceFacts>> {
        let Some(resource) = queries::resource(self.conn, id)? else {
            return Ok(None);
        };
        let has_pools = self
            .conn
            .prepare_cached("SELECT 1 FROM pools WHERE resource_id = ?1")?
            .exists([id.as_str()])?;
        Ok(Some(ResourceFacts {
            owner: resource.owner,
            kind: resource.kind,
            has_pools,
        }))
    }

    fn pool(&self, id: &PoolId) -> StoreResult<Option<PoolFacts>> {
        Ok(queries::pool_row_of(self.conn, id)?.map(|row| PoolFacts {
            owner: row.owner,
            capacity: row.capacity,
        }))
    }

    fn booking(&self, id: &BookingId) -> StoreResult<Option<BookingFacts>> {
        Ok(queries::booking(self.conn, id)?.map(|b| BookingFacts {
            // Our own state of what is charged to us; of others' bookings
            // we only see what reached us.
            charged_state: (b.charged_to == *self.me).then_some(b.state),
            owner: b.owner,
            requested_by: b.requested_by,
            charged_to: b.charged_to,
            channel: b.channel,
            lines: b.lines,
            customer: b.customer,
        }))
    }

    /// Ours exactly; for a pool of ours, what we gave a holder and did not
    /// have back is at most what it holds (it may have returned or sold
    /// some); of anyone else's pools we know nothing.
    fn available(&self, pool: &PoolId, holder: &ParticipantId) -> StoreResult<Option<i64>> {
        let Some(row) = queries::pool_row_of(self.conn, pool)? else {
            return Ok(None);
        };
        if holder == self.me {
            return Ok(Some(row.holding().available()));
        }
        if row.owner != *self.me {
            return Ok(None);
        }
        let granted: Option<i64> = self
            .conn
            .prepare_cached("SELECT units FROM allotments WHERE pool_id = ?1 AND grantee = ?2")?
            .query_row(params![pool.as_str(), holder.as_str()], |r| r.get(0))
            .optional()?;
        Ok(Some(granted.unwrap_or(0)))
    }

    fn in_flight(
        &self,
        _pool: &PoolId,
        _from: &ParticipantId,
        _to: &ParticipantId,
    ) -> StoreResult<Option<i64>> {
        Ok(None)
    }

    fn may_receive(&self, participant: &ParticipantId) -> StoreResult<Option<bool>> {
        Ok((participant == self.me || *participant == ParticipantId::Hub).then_some(true))
    }
}
