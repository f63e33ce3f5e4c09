//! Tests of the database: backups, restores, the relay, the role, faults (src/db/).

mod backup;
mod db_relay;
mod db_role;
mod faults;
mod restore;
