//! Rows and bytes of every table of a redb file (a stopped node's), as JSON lines: where a
//! file's size goes. Shared by the benchmarks.

/// Rows and bytes of every table in a redb file: where the file's size goes.
pub fn print(file: &str) {
    use redb::{ReadableDatabase as _, ReadableTableMetadata as _, TableHandle as _};
    let db = redb::Database::open(file).expect("open");
    let tx = db.begin_read().expect("read");
    let mut total = 0;
    for handle in tx.list_tables().expect("tables") {
        let name = handle.name().to_owned();
        let table = tx.open_untyped_table(handle).expect("table");
        let stats = table.stats().expect("stats");
        let len = table.len().expect("len");
        total += stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
        println!(
            "{{\"table\": \"{name}\", \"rows\": {len}, \"stored\": {}, \"metadata\": {}, \"fragmented\": {}}}",
            stats.stored_bytes(),
            stats.metadata_bytes(),
            stats.fragmented_bytes()
        );
    }
    println!("{{\"tables_total\": {total}}}");
}
