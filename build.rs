//! Rebuilds when a migration is added or changed: `refinery::embed_migrations!` reads
//! the `migrations/` folder at compile time.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
