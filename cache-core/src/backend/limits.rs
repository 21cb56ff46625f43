//! [`Limits`]: a bounded backend's capacity and largest value, validated once.

use super::Capabilities;
use crate::error::{Context, Error, Op, Result};
use crate::key::CacheKey;

/// The byte capacity of a bounded backend and the largest value it accepts.
///
/// Build it with [`Limits::new`] when a backend opens (it refuses impossible settings with a
/// clear [`Error::Config`]) and call [`check`](Self::check) at the start of every put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `u64::MAX` for an unbounded store ([`values_up_to`](Limits::values_up_to)).
    capacity: u64,
    max_value: u64,
}

impl Limits {
    /// Validates a `capacity` and an optional `max_value_size` for the backend called `name`.
    /// Without a `max_value_size` the largest value is the capacity. `ceiling` is the store's
    /// own limit on one value (redb's 3 GiB, for example), if it has one; a default maximum is
    /// cut to it, an explicit one above it is refused.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the capacity is zero, or the largest value is zero, above the
    /// capacity or above the ceiling.
    pub fn new(
        name: &str,
        capacity: u64,
        max_value_size: Option<u64>,
        ceiling: Option<u64>,
    ) -> Result<Self> {
        let ctx = || Context::new(name, Op::Open);
        if capacity == 0 {
            return Err(Error::config(ctx(), "capacity must be at least 1 byte"));
        }
        let ceiling = ceiling.unwrap_or(u64::MAX);
        let max_value = match max_value_size {
            Some(max) if max > ceiling => {
                return Err(Error::config(
                    ctx(),
                    format!(
                        "max_value_size of {max} bytes is over this store's limit of {ceiling} bytes"
                    ),
                ));
            }
            Some(max) => max,
            None => capacity.min(ceiling),
        };
        if max_value == 0 || max_value > capacity {
            return Err(Error::config(
                ctx(),
                format!(
                    "max_value_size of {max_value} bytes must be between 1 and the capacity of {capacity} bytes"
                ),
            ));
        }
        Ok(Self {
            capacity,
            max_value,
        })
    }

    /// Limits of a store without a byte capacity (it never evicts) that accepts values of at
    /// most `max_value_size` bytes: a remote store with a per-object limit, say.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `max_value_size` is zero.
    pub fn values_up_to(name: &str, max_value_size: u64) -> Result<Self> {
        if max_value_size == 0 {
            return Err(Error::config(
                Context::new(name, Op::Open),
                "max_value_size must be at least 1 byte",
            ));
        }
        Ok(Self {
            capacity: u64::MAX,
            max_value: max_value_size,
        })
    }

    /// Whether the store has a byte capacity (not [`values_up_to`](Self::values_up_to)).
    pub fn is_bounded(&self) -> bool {
        self.capacity != u64::MAX
    }

    /// The byte capacity (`u64::MAX` when [unbounded](Self::is_bounded)).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The largest value accepted, in bytes.
    pub fn max_value(&self) -> u64 {
        self.max_value
    }

    /// Capabilities of a store with these limits: bounded by the capacity, values up to the
    /// largest value; add the rest with the `with_*` setters.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .with_capacity(self.is_bounded().then_some(self.capacity))
            .with_max_value_size(Some(self.max_value))
    }

    /// Refuses a value of `size` bytes for `key` when it is over the largest value, with
    /// [`Error::Capacity`] naming the backend, the key and both sizes.
    ///
    /// # Errors
    ///
    /// [`Error::Capacity`] as above.
    pub fn check(&self, name: &str, key: &CacheKey, size: u64) -> Result<()> {
        if size > self.max_value {
            return Err(Error::Capacity {
                context: Context::with_key(name, Op::Put, key),
                size,
                limit: self.max_value,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn validates_once() {
        assert_eq!(Limits::new("t", 100, None, None).unwrap().max_value(), 100);
        assert_eq!(
            Limits::new("t", 100, None, Some(10)).unwrap().max_value(),
            10
        );
        assert_eq!(Limits::new("t", 100, Some(5), None).unwrap().max_value(), 5);
        for (capacity, max, ceiling) in [
            (0, None, None),
            (10, Some(0), None),
            (10, Some(11), None),
            (100, Some(50), Some(10)),
        ] {
            let err = Limits::new("t", capacity, max, ceiling).unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::Config,
                "{capacity} {max:?} {ceiling:?}"
            );
        }
    }

    #[test]
    fn an_unbounded_store_can_limit_its_values() {
        let limits = Limits::values_up_to("t", 10).unwrap();
        assert!(!limits.is_bounded());
        let caps = limits.capabilities();
        assert_eq!((caps.capacity, caps.max_value_size), (None, Some(10)));
        let key = CacheKey::from_bytes([1; 32]);
        assert!(limits.check("t", &key, 10).is_ok());
        assert_eq!(
            limits.check("t", &key, 11).unwrap_err().kind(),
            ErrorKind::Capacity
        );
        assert_eq!(
            Limits::values_up_to("t", 0).unwrap_err().kind(),
            ErrorKind::Config
        );
        assert!(Limits::new("t", 100, None, None).unwrap().is_bounded());
        assert_eq!(Op::GetTail.to_string(), "get_tail");
    }

    #[test]
    #[allow(deprecated)]
    fn moved_helpers_still_answer_at_their_old_names() {
        let all = [crate::KeyInfo {
            key: CacheKey::from_bytes([1; 32]),
            size: 3,
        }];
        assert_eq!(
            crate::page_from_sorted(&all, None, 5),
            super::super::page_from_sorted(&all, None, 5)
        );
        assert_eq!(
            futures::executor::block_on(crate::maybe_spawn_blocking(|| 7)),
            7
        );
    }

    #[test]
    fn check_refuses_over_the_largest_value() {
        let limits = Limits::new("t", 100, Some(10), None).unwrap();
        let key = CacheKey::from_bytes([1; 32]);
        assert!(limits.check("t", &key, 10).is_ok());
        let err = limits.check("t", &key, 11).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Capacity);
        assert!(err.to_string().contains(&key.to_string()));
    }
}
