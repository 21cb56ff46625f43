//! [`Eviction`]: which entry a bounded store gives up first, and the one formula that ranks
//! entries under the cost-aware policy.

use serde::{Deserialize, Serialize};

/// How a bounded store chooses what to evict.
///
/// Both policies skip pinned entries and the value being written; they differ in the order.
/// The default is [`Cost`](Self::Cost): in the trace-driven simulation over the real stores
/// (`scripts/bench-eviction.sh`, figures in `docs/BENCHMARKS.md`) it lost 4-15% fewer
/// compile-seconds than least recently used at every capacity and Zipf skew from 0.6, 3-15%
/// with frequent deploys, and within noise of it when popularity is uniform.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Eviction {
    /// Least recently used first.
    Lru,
    /// Lowest [`priority`] first: what each entry cost to produce per byte it takes, times how
    /// often it was used, aged by the store's inflation (GreedyDual-Size-Frequency).
    #[default]
    Cost,
}

impl Eviction {
    /// The setting's name, as configuration files spell it: `lru` or `cost`.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Cost => "cost",
        }
    }
}

impl std::fmt::Display for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Eviction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lru" => Ok(Eviction::Lru),
            "cost" => Ok(Eviction::Cost),
            other => Err(format!(
                "unknown eviction policy `{other}`: use `lru` or `cost`"
            )),
        }
    }
}

/// The most uses [`priority`] counts. An entry's past popularity can then outweigh at most
/// this many times its cost per byte, so after a deploy the old versions' entries fall to the
/// inflation within a few evictions instead of lingering. In the eviction simulation with
/// frequent deploys (the 20 most popular modules replaced every 1,000 requests), counting up
/// to 8 uses lost up to 6% more compile time than least recently used at half capacity;
/// counting up to 4 never lost more, for 2-4 points less gain where popularity never shifts.
/// Counters that saturate are TinyLFU's answer to the same problem.
pub const MAX_COUNTED_USES: u64 = 4;

/// An entry's worth keeping under [`Eviction::Cost`]; the entry with the lowest is evicted
/// first.
///
/// GreedyDual-Size-Frequency (Cherkasova, HP Labs 1998):
/// `inflation + uses × cost / size`, where `uses` counts the write and every recorded use
/// since (at most [`MAX_COUNTED_USES`]), and `inflation` is the store's inflation value when
/// the entry was last used. The store raises its inflation to the priority of each entry it
/// evicts, so entries not used for a while fall below those used since: that is how age
/// counts. Chosen because its value per byte (`cost / size`) is exactly what a miss loses per
/// byte, and because it kept more than hyperbolic caching (cost × uses / (size × age)) when
/// the two were compared on the simulation's trace.
///
/// A cost of 0 (unknown: a value that is not an envelope, or an old one) counts as 1 ms, so
/// use still ranks such entries.
pub fn priority(inflation: f64, uses: u64, cost_ms: u64, size: u64) -> f64 {
    let uses = uses.clamp(1, MAX_COUNTED_USES);
    inflation + uses as f64 * cost_ms.max(1) as f64 / size.max(1) as f64
}

/// What producing `value` cost in milliseconds, as its envelope's trailer records it; 0 when
/// the value is not an envelope. Read without verifying: it only orders eviction.
pub fn cost_of(value: &[u8]) -> u64 {
    crate::envelope::inspect(value).map_or(0, |meta| meta.compute_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_grows_with_cost_use_and_inflation_and_falls_with_size() {
        let base = priority(0.0, 1, 100, 1000);
        assert!(priority(0.0, 1, 200, 1000) > base);
        assert!(priority(0.0, 2, 100, 1000) > base);
        assert!(priority(0.0, 1, 100, 2000) < base);
        assert!(priority(1.0, 1, 100, 1000) > base);
        assert!(priority(0.0, 0, 0, 0).is_finite());
        assert_eq!(
            priority(0.0, 1000, 100, 1000),
            priority(0.0, MAX_COUNTED_USES, 100, 1000),
            "uses count up to a bound"
        );
    }

    #[test]
    fn the_setting_parses_its_own_names() {
        for policy in [Eviction::Lru, Eviction::Cost] {
            assert_eq!(policy.as_str().parse::<Eviction>(), Ok(policy));
        }
        let err = "lfu".parse::<Eviction>().unwrap_err();
        assert!(err.contains("`lru` or `cost`"), "{err}");
    }
}
