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

    /// The byte capacity.
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
            .with_capacity(Some(self.capacity))
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
    fn check_refuses_over_the_largest_value() {
        let limits = Limits::new("t", 100, Some(10), None).unwrap();
        let key = CacheKey::from_bytes([1; 32]);
        assert!(limits.check("t", &key, 10).is_ok());
        let err = limits.check("t", &key, 11).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Capacity);
        assert!(err.to_string().contains(&key.to_string()));
    }
}
