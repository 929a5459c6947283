//! The stores: metadata ([`db`]: SQLite embedded, MongoDB shared, one trait
//! and one conformance suite), content-addressed blobs ([`blobs`], with the
//! leases that keep a blob from garbage collection while a call names it) and
//! upload sessions ([`sessions`]). Depends only on `wharf-core`.

pub mod blobs;
pub mod db;
pub mod sessions;
