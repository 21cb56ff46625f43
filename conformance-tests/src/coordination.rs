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

/// A lease is held for at least the ttl it was taken with: another caller probing at 70% and
/// 90% of a 1.5 s ttl (measured from before the call that took it) finds it held. Catches a
/// ttl rounded down to whole seconds. There is no bound on how soon it is free afterwards
/// ([`lease_abandoned_expires`] bounds that generously).
pub async fn lease_lasts_its_ttl(b: Arc<dyn Backend>) -> CheckResult {
    if !offers_leases(&b) {
        return skipped("the backend does not offer leases (coordinates)");
    }
    let ttl = Duration::from_millis(1500);
    let k = key(7400);
    let asked = Instant::now();
    let Some(lease) = try_lease(&b, &k, ttl, "holder").await? else {
        return Err(Failure(
            "try_lease of a key nobody holds returned None".to_owned(),
        ));
    };
    for share in [0.7, 0.9] {
        let at = ttl.mul_f64(share);
        if let Some(wait) = at.checked_sub(asked.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let probed = asked.elapsed();
        if probed >= ttl {
            // This probe came too late to say anything (a slow store): no verdict from it.
            break;
        }
        let intruder = try_lease(&b, &k, ttl, "intruder").await?;
        let held = intruder.is_none();
        if let Some(intruder) = intruder {
            intruder.release().await?;
        }
        ensure!(
            held,
            "a lease taken with a ttl of {ttl:?}, not renewed, was granted to another caller \
             {probed:?} after it was asked for: a lease must be held for at least its ttl (is \
             the ttl rounded to whole seconds?)"
        );
    }
    lease.release().await?;
    PASSED
}

/// A holder whose lease expired and was taken over is stale: its `renew` and `release` change
/// nothing for the new holder (they act only on the stale lease's own token or generation).
/// Skipped for leases held for as long as the holder lives (no `renew_every`: file locks),
/// which never go stale.
pub async fn lease_stale_holder_changes_nothing(b: Arc<dyn Backend>) -> CheckResult {
    if !offers_leases(&b) {
        return skipped("the backend does not offer leases (coordinates)");
    }
    let k = key(7500);
    let Some(stale) = try_lease(&b, &k, SHORT_TTL, "stale").await? else {
        return Err(Failure(
            "try_lease of a key nobody holds returned None".to_owned(),
        ));
    };
    if stale.renew_every().is_none() {
        stale.release().await?;
        return skipped("leases stay held while their holder lives (no renew_every)");
    }
    // The stale holder pauses past its ttl without renewing; another takes the key.
    let paused = Instant::now();
    let give_up = SHORT_TTL * 2 + Duration::from_secs(3);
    let fresh = loop {
        if let Some(lease) = try_lease(&b, &k, Duration::from_secs(60), "fresh").await? {
            break lease;
        }
        ensure!(
            paused.elapsed() < give_up,
            "a lease not renewed for {:?} (ttl {SHORT_TTL:?}) still could not be taken; an \
             expired lease must be takeable",
            paused.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A stale renewal may report an error (it lost the lease) or not; either way it changes
    // nothing.
    let _ = stale.renew().await;
    ensure!(
        try_lease(&b, &k, SHORT_TTL, "third").await?.is_none(),
        "after a stale holder's renew, the key's lease (taken over by a new holder) was granted \
         to a third caller: renew must act only on the holder's own lease"
    );
    stale.release().await?;
    let third = try_lease(&b, &k, SHORT_TTL, "third").await?;
    let freed = third.is_some();
    if let Some(third) = third {
        third.release().await?;
    }
    ensure!(
        !freed,
        "a stale holder's release freed the lease a new holder took after it expired: release \
         must act only on the holder's own lease (compare its token or generation, not the key)"
    );
    fresh.release().await?;
    ensure!(
        try_lease(&b, &k, SHORT_TTL, "after").await?.is_some(),
        "after the new holder released its lease, try_lease returned None"
    );
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
