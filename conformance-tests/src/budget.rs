//! Value sizes and counts a check may use, derived from what the backend declares, so a bounded
//! backend of any size runs the same suite.

use warmcache_core::Backend;

use crate::failure::Failure;

/// The smallest `max_value_size` the suite runs against: test values carry 16 bytes of
/// identity, and no cache entry (its envelope alone) is smaller than this.
pub const MIN_VALUE_SIZE: u64 = 64;
/// The smallest capacity the suite runs against.
pub const MIN_CAPACITY: u64 = 1 << 10;

/// What a check may write to one backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// The declared capacity, if bounded.
    pub(crate) capacity: Option<u64>,
    /// The declared slack over the capacity.
    pub(crate) slack: u64,
    /// The largest value accepted (`u64::MAX` without a limit).
    pub(crate) max_value: u64,
}

impl Budget {
    /// The budget of `b`, or a failure naming why the suite cannot run against it.
    pub(crate) fn of(b: &dyn Backend) -> Result<Self, Failure> {
        let caps = b.capabilities();
        let max_value = caps.max_value_size.unwrap_or(u64::MAX);
        if max_value < MIN_VALUE_SIZE {
            return Err(Failure(format!(
                "the backend declares a max_value_size of {max_value} bytes; the suite needs at \
                 least {MIN_VALUE_SIZE} (no cache entry is smaller)"
            )));
        }
        if let Some(capacity) = caps.capacity {
            if capacity < MIN_CAPACITY {
                return Err(Failure(format!(
                    "the backend declares a capacity of {capacity} bytes; the suite needs at \
                     least {MIN_CAPACITY}"
                )));
            }
            if max_value != u64::MAX && max_value > capacity {
                return Err(Failure(format!(
                    "the backend declares a max_value_size of {max_value} bytes over its capacity \
                     of {capacity} bytes: such a value could never be kept"
                )));
            }
        }
        Ok(Self {
            capacity: caps.capacity,
            slack: caps.capacity_slack,
            max_value,
        })
    }

    /// Whether the backend may evict entries (it is bounded), so a key a check wrote earlier
    /// may be gone (but never wrong).
    pub(crate) fn may_evict(&self) -> bool {
        self.capacity.is_some()
    }

    /// A value length for a check that keeps a few values at once: `want`, cut to the largest
    /// value accepted and to a quarter of the capacity, and never below
    /// [`MIN_VALUE_SIZE`] (unless `want` is smaller).
    pub(crate) fn len(&self, want: usize) -> usize {
        let mut cap = self.max_value;
        if let Some(capacity) = self.capacity {
            cap = cap.min(capacity / 4);
        }
        let cap = usize::try_from(cap.max(MIN_VALUE_SIZE)).unwrap_or(usize::MAX);
        want.min(cap)
    }

    /// How many values of `len` bytes a check keeps: `want`, cut so that they take at most a
    /// quarter of the capacity, and at least 4.
    pub(crate) fn count(&self, want: u64, len: usize) -> u64 {
        match self.capacity {
            Some(capacity) => want.min((capacity / 4) / (len.max(1) as u64)).max(4),
            None => want,
        }
    }
}
