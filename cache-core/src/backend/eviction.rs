//! [`Eviction`]: which entry a bounded store gives up first, and the one formula that ranks
//! entries under the cost-aware policy.

use serde::{Deserialize, Serialize};

/// How a bounded store chooses what to evict.
///
/// Both policies skip pinned entries and the value being written; they differ in the order.
/// The default is [`Cost`](Self::Cost): in the trace-driven simulation over the real stores
/// (`scripts/bench-eviction.sh`, figures in `docs/BENCHMARKS.md`) it lost fewer compile-seconds
/// than least-recently-used at every capacity and skew measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Eviction {
    /// Least recently used first.
    Lru,
    /// Lowest [`priority`] first: what each entry cost to produce, per byte it takes, times
    /// how often it was used, over how long it has been stored.
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

/// An entry's worth keeping under [`Eviction::Cost`]; the entry with the lowest is evicted
/// first.
///
/// Hyperbolic caching with costs (Blankstein, Sen and Freedman, USENIX ATC 2017):
/// `cost × uses / (size × age)`, where `uses` counts the write and every recorded read since,
/// and `age` is the time since the value was written, in any unit as long as one store uses
/// one. Chosen over GreedyDual-Size-Frequency because it needs no global inflation value:
/// the priority follows from an entry's own record, so it is exact for sampled eviction (the
/// paper's own setting, as in [`SampledLru`](super::SampledLru)), survives a restart without
/// saved state, and is the same for every process evicting from a shared directory. Age makes
/// an entry that stopped being used lose its place, however expensive it was.
///
/// A cost of 0 (unknown: a value that is not an envelope, or an old one) counts as 1 ms, so
/// use still ranks such entries.
pub fn priority(cost_ms: u64, uses: u64, size: u64, age: f64) -> f64 {
    let worth = cost_ms.max(1) as f64 * uses.max(1) as f64;
    worth / (size.max(1) as f64 * age.max(f64::MIN_POSITIVE))
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
    fn priority_grows_with_cost_and_use_and_falls_with_size_and_age() {
        let base = priority(100, 1, 1000, 10.0);
        assert!(priority(200, 1, 1000, 10.0) > base);
        assert!(priority(100, 2, 1000, 10.0) > base);
        assert!(priority(100, 1, 2000, 10.0) < base);
        assert!(priority(100, 1, 1000, 20.0) < base);
        assert!(priority(0, 0, 0, 0.0).is_finite());
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
