//! Request ids and the wall clock.
//!
//! Every call gets a fresh UUIDv7 of the gateway's own (time-ordered, so ids sort like the
//! logs): it keys the spend ledger's rows (with the call's sequence number) and names the
//! call in the log. A client's own id is never the ledger's key: two calls that reuse one
//! must not collapse into one row.

/// A fresh UUIDv7: the time in milliseconds and 74 random bits. The bits come from a
/// thread-local generator rather than the OS (a request id needs to be unique, not
/// secret), which saves a `getrandom` system call per request.
pub fn request_id() -> String {
    let ms = u64::try_from(now_ms()).unwrap_or(0);
    let random = fastrand::u128(..).to_le_bytes();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random[..10]);
    uuid::Builder::from_unix_timestamp_millis(ms, &bytes)
        .into_uuid()
        .to_string()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_uuid_v7_and_differ() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
    }
}
