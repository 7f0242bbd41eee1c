//! The sample catalog of `edge-node demo`: stock items for pickup and a
//! week of class slots, generated in the location's time zone.

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{ToSpan, Zoned};
use shared::event::ResourceKind;
use shared::{PoolId, ResourceId};

use crate::store::ops::{self, NewPool, NewResource};
use crate::store::{Store, StoreError, StoreResult};

fn id<T>(parse: impl Fn(&str) -> Result<T, shared::IdError>, value: &str) -> StoreResult<T> {
    parse(value).map_err(|e| StoreError::Internal(e.to_string()))
}

/// Creates two stock items and a daily class at 10:00 local for a week.
pub async fn seed_catalog(store: &Store) -> StoreResult<()> {
    let tz_name = store.node().timezone.clone();
    let now_ms = store.now_ms();
    store
        .write(move |ctx| {
            for (slug, name, capacity) in [
                ("beans-1kg", "Espresso beans, 1 kg", 25),
                ("sourdough", "Sourdough loaf", 12),
            ] {
                let resource = ops::create_resource(
                    ctx,
                    NewResource {
                        id: Some(id(ResourceId::parse, &format!("demo-store:{slug}"))?),
                        name: name.into(),
                        kind: ResourceKind::Stock,
                    },
                )?;
                ops::create_pool(
                    ctx,
                    NewPool {
                        id: Some(id(PoolId::parse, &format!("demo-store:{slug}"))?),
                        resource_id: resource.id,
                        capacity,
                        starts_at_ms: None,
                        ends_at_ms: None,
                    },
                )?;
            }
            let class = ops::create_resource(
                ctx,
                NewResource {
                    id: Some(id(ResourceId::parse, "demo-store:barista-class")?),
                    name: "Barista class".into(),
                    kind: ResourceKind::Slot,
                },
            )?;
            let tz = TimeZone::get(&tz_name).map_err(|e| StoreError::Internal(e.to_string()))?;
            let today = jiff::Timestamp::from_millisecond(now_ms)
                .map_err(|e| StoreError::Internal(e.to_string()))?
                .to_zoned(tz.clone())
                .date();
            for day in 1..=7 {
                let date = today
                    .checked_add(day.days())
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                let start: Zoned = date
                    .to_datetime(Time::constant(10, 0, 0, 0))
                    .to_zoned(tz.clone())
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                let end = start
                    .checked_add(90.minutes())
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                ops::create_pool(
                    ctx,
                    NewPool {
                        id: Some(id(
                            PoolId::parse,
                            &format!("demo-store:barista-class:{date}"),
                        )?),
                        resource_id: class.id.clone(),
                        capacity: 8,
                        starts_at_ms: Some(start.timestamp().as_millisecond()),
                        ends_at_ms: Some(end.timestamp().as_millisecond()),
                    },
                )?;
            }
            Ok(())
        })
        .await
}
