//! The file-system seam: every byte the log writes goes through [`Storage`], so tests can swap in
//! a simulated disk that throws away whatever was not fsynced when the "power" is cut.
//!
//! CONTRACT (names fixed; methods are being designed with the log engine).

/// File operations the log engine needs.
pub trait Storage: Send + Sync {}

/// The real file system.
pub struct OsStorage;
