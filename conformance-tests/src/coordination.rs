//! Coordination through [`Backend::try_lease`], for backends that offer it
//! ([`Capabilities::coordinates`](warmcache_core::Capabilities::coordinates)): exclusion,
//! expiry of an abandoned lease, renewal, release, and leases never showing as entries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use warmcache_core::backend::Lease;
use warmcache_core::{Backend, BackendExt, CacheKey, ErrorKind};

use crate::basic::key;
use crate::failure::{CheckResult, Failure, PASSED, ensure, skipped};

/// Concurrent callers racing for one key's lease.
const RACERS: usize = 8;
/// The ttl the expiry checks take leases with.
const SHORT_TTL: Duration = Duration::from_millis(1500);

async fn try_lease(
    b: &Arc<dyn Backend>,
    key: &CacheKey,
    ttl: Duration,
    who: &str,
) -> Result<Option<Box<dyn Lease>>, Failure> {
    b.try_lease(key, ttl, who).await.map_err(|e| {
        if e.kind() == ErrorKind::NotSupported {
            Failure(format!(
                "the backend declares `coordinates` but try_lease answered {e}; \
                 implement try_lease or leave the capability unset"
            ))
        } else {
            Failure(format!("try_lease failed: {e}"))
        }
    })
}

fn offers_leases(b: &Arc<dyn Backend>) -> bool {
    b.capabilities().coordinates
}

/// Of eight concurrent `try_lease` calls for one key, exactly one gets the lease; while it is
/// held another key's lease can still be taken; a lease is never an entry (`get`, `contains`,
/// `list` and `usage` do not see it, `clear` leaves it held).
pub async fn lease_exclusive(b: Arc<dyn Backend>) -> CheckResult {
    if !offers_leases(&b) {
        return skipped("the backend does not offer leases (coordinates)");
    }
    let contended = key(7000);
    let racers = (0..RACERS).map(|i| {
        let b = Arc::clone(&b);
        tokio::spawn(async move {
            b.try_lease(&contended, Duration::from_secs(30), &format!("racer {i}"))
                .await
        })
    });
    let mut won = Vec::new();
    for racer in futures::future::join_all(racers).await {
        let outcome = racer.map_err(|e| Failure(format!("a racing task panicked: {e}")))?;
        if let Some(lease) = outcome.map_err(|e| Failure(format!("try_lease failed: {e}")))? {
            won.push(lease);
        }
    }
    ensure!(
        won.len() == 1,
        "{} of {RACERS} concurrent try_lease calls for one key got the lease, expected exactly 1",
        won.len()
    );
    ensure!(
        try_lease(&b, &contended, Duration::from_secs(30), "late")
            .await?
            .is_none(),
        "a lease was granted while another caller held it"
    );
    let other = try_lease(&b, &key(7001), Duration::from_secs(30), "other key").await?;
    ensure!(
        other.is_some(),
        "holding the lease of one key kept another key's lease from being taken"
    );
    ensure!(
        b.get(&contended).await?.is_none() && !b.contains(&contended).await?,
        "a held lease shows as an entry under its key"
    );
    let listed = b.list_all().await?;
    let usage = b.usage().await?;
    ensure!(
        listed.is_empty() && usage.entries == 0 && usage.bytes == 0,
        "with only leases held, list() returned {} entries and usage() {} entries of {} bytes; \
         expected nothing (leases are not entries)",
        listed.len(),
        usage.entries,
        usage.bytes
    );
    b.put(&contended, Bytes::from_static(b"value")).await?;
    b.clear().await?;
    ensure!(
        try_lease(&b, &contended, Duration::from_secs(30), "after clear")
            .await?
            .is_none(),
        "clear() released a lease that was still held"
    );
    for lease in won.into_iter().chain(other) {
        lease.release().await?;
    }
    PASSED
}

/// A lease dropped without release (its holder died) can be taken again once its ttl has
/// passed (sooner where the backend can tell the holder is gone), and not before it was
/// dropped.
pub async fn lease_abandoned_expires(b: Arc<dyn Backend>) -> CheckResult {
    if !offers_leases(&b) {
        return skipped("the backend does not offer leases (coordinates)");
    }
    let k = key(7100);
    let Some(first) = try_lease(&b, &k, SHORT_TTL, "abandoned").await? else {
        return Err(Failure(
            "try_lease of a key nobody holds returned None".to_owned(),
        ));
    };
    ensure!(
        try_lease(&b, &k, SHORT_TTL, "too early").await?.is_none(),
        "a lease was granted while its holder still held it, within its ttl"
    );
    let dropped = Instant::now();
    drop(first);
    let give_up = SHORT_TTL * 2 + Duration::from_secs(3);
    loop {
        if let Some(lease) = try_lease(&b, &k, SHORT_TTL, "taker").await? {
            lease.release().await?;
            return PASSED;
        }
        ensure!(
            dropped.elapsed() < give_up,
            "a lease dropped without release (ttl {SHORT_TTL:?}) still could not be taken \
             {:?} later; an expired lease must be takeable",
            dropped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A holder that renews as [`Lease::renew_every`] asks keeps its lease past the ttl it took it
/// with.
pub async fn lease_renewal_keeps_it(b: Arc<dyn Backend>) -> CheckResult {
    if !offers_leases(&b) {
        return skipped("the backend does not offer leases (coordinates)");
    }
    let k = key(7200);
    let Some(lease) = try_lease(&b, &k, SHORT_TTL, "renewer").await? else {
        return Err(Failure(
            "try_lease of a key nobody holds returned None".to_owned(),
        ));
    };
    let every = lease
        .renew_every()
        .unwrap_or(SHORT_TTL / 3)
        .min(SHORT_TTL / 2);
    let started = Instant::now();
    while started.elapsed() < SHORT_TTL * 2 {
        tokio::time::sleep(every).await;
        lease
            .renew()
            .await
            .map_err(|e| Failure(format!("renewing a held lease failed: {e}")))?;
        ensure!(
            try_lease(&b, &k, SHORT_TTL, "intruder").await?.is_none(),
            "a lease renewed every {every:?} (ttl {SHORT_TTL:?}) was taken by another caller \
             {:?} after it was first taken",
            started.elapsed()
        );
    }
    lease.release().await?;
    PASSED
}

/// A released lease is gone: the next `try_lease` gets it at once, and releasing twice is
/// not an error.
pub async fn lease_released_is_gone(b: Arc<dyn Backend>) -> CheckResult {
    if !offers_leases(&b) {
        return skipped("the backend does not offer leases (coordinates)");
    }
    let k = key(7300);
    for round in 0..3 {
        let Some(lease) = try_lease(&b, &k, Duration::from_secs(60), "holder").await? else {
            return Err(Failure(format!(
                "round {round}: try_lease right after a release returned None; a released \
                 lease must be gone"
            )));
        };
        lease.release().await?;
        lease
            .release()
            .await
            .map_err(|e| Failure(format!("releasing a lease a second time failed: {e}")))?;
    }
    let listed = b.list_all().await?;
    ensure!(
        listed.is_empty(),
        "after leases were taken and released, list() shows {} entries, expected none",
        listed.len()
    );
    PASSED
}
