//! Where a key lives in the bucket: `prefix/<first byte as 2 hex>/<64 hex>`.

use object_store::path::Path;
use warmcache_core::CacheKey;

/// Object path of `key` under `prefix`.
pub(crate) fn object_path(prefix: &Path, key: &CacheKey) -> Path {
    let hex = key.to_hex();
    prefix.clone().join(&hex[..2]).join(hex)
}

/// The key of an object path under `prefix`, or `None` for anything that is not one of ours.
pub(crate) fn parse_key(prefix: &Path, path: &Path) -> Option<CacheKey> {
    let mut parts = path.prefix_match(prefix)?;
    let fan = parts.next()?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let key: CacheKey = name.as_ref().parse().ok()?;
    (key.to_hex()[..2] == *fan.as_ref()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_objects() {
        let prefix = Path::from("cache/v1");
        let key = CacheKey::from_bytes([0xab; 32]);
        let path = object_path(&prefix, &key);
        assert_eq!(path.as_ref(), format!("cache/v1/ab/{}", key.to_hex()));
        assert_eq!(parse_key(&prefix, &path), Some(key));
        assert_eq!(
            parse_key(&prefix, &Path::from("cache/v1/ab/readme.txt")),
            None
        );
        assert_eq!(
            parse_key(
                &prefix,
                &Path::from(format!("cache/v1/cd/{}", key.to_hex()))
            ),
            None
        );
        assert_eq!(parse_key(&prefix, &Path::from("other/ab")), None);
        let root = Path::default();
        assert_eq!(parse_key(&root, &object_path(&root, &key)), Some(key));
    }
}
