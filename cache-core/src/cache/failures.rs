//! Remembered failures: a computation that failed is stored, for a while, as an entry of its
//! own under a key derived from the value's, so that the next request in any process sharing a
//! tier gets the failure without computing again.

use std::time::Duration;

use super::{Cache, ComputeError};
use crate::codec::Codec;
use crate::envelope::{Origin, now_ms};
use crate::key::{CacheKey, Namespace};

/// The envelope kind of a remembered failure; its payload is the failure's message.
pub const FAILURE_KIND: u32 = u32::from_le_bytes(*b"fail");

/// The key a failure of computing `key` in `context` is remembered under.
fn failure_key(key: &CacheKey, context: &[u8]) -> CacheKey {
    let mut builder = Namespace::new("warmcache-failure").builder();
    builder.key(key).bytes(context);
    builder.finish()
}

impl<V, C> Cache<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Codec<V>,
{
    /// The remembered failure of computing `key`, if there is one younger than its lifetime.
    pub(super) async fn remembered_failure(&self, key: &CacheKey) -> Option<ComputeError> {
        let lifetime = self.remember_failures?;
        let entry = self
            .tiers
            .get(&failure_key(key, &self.failure_context), FAILURE_KIND)
            .await?;
        let age = Duration::from_millis(now_ms().saturating_sub(entry.meta().created_ms));
        if age >= lifetime {
            return None;
        }
        tracing::debug!(%key, ?age, "a remembered failure; not computing again");
        Some(ComputeError::Remembered {
            key: *key,
            message: String::from_utf8_lossy(entry.payload()).into_owned(),
            age,
        })
    }

    /// Remembers `failure` of computing `key`, when failures are remembered and it is one a
    /// computation returned (a panic or a refusal is not).
    pub(super) async fn remember_failure(&self, key: &CacheKey, failure: &ComputeError) {
        let (Some(_), ComputeError::Failed { source, .. }) = (self.remember_failures, failure)
        else {
            return;
        };
        let message = format!("{source:#}");
        let origin = Origin::new(FAILURE_KIND, self.producer.clone());
        self.tiers
            .put(
                &failure_key(key, &self.failure_context),
                &origin,
                message.as_bytes(),
            )
            .await;
    }
}
