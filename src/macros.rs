//! Small macros shared by modules.

/// `From` conversions from redb's error types into `$error::$variant(redb::Error)`, so `?` works
/// on every redb call.
macro_rules! redb_errors_into {
    ($error:ident :: $variant:ident) => {
        impl From<redb::DatabaseError> for $error {
            fn from(e: redb::DatabaseError) -> Self {
                $error::$variant(e.into())
            }
        }
        impl From<redb::TransactionError> for $error {
            fn from(e: redb::TransactionError) -> Self {
                $error::$variant(e.into())
            }
        }
        impl From<redb::TableError> for $error {
            fn from(e: redb::TableError) -> Self {
                $error::$variant(e.into())
            }
        }
        impl From<redb::StorageError> for $error {
            fn from(e: redb::StorageError) -> Self {
                $error::$variant(e.into())
            }
        }
        impl From<redb::CommitError> for $error {
            fn from(e: redb::CommitError) -> Self {
                $error::$variant(e.into())
            }
        }
    };
}
pub(crate) use redb_errors_into;
