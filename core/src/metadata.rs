//! The node's metadata store: one redb database (`meta.redb` in the data directory) with a schema
//! version. Topics, master key id, committed offsets and checkpoints live here; appends never do.
//!
//! CONTRACT (names fixed; bodies are being implemented).

/// Handle to the metadata database.
pub struct MetaStore {}

impl MetaStore {
    /// The underlying database, for modules that own their own tables (e.g. committed offsets).
    pub fn db(&self) -> &redb::Database {
        todo!()
    }
}
