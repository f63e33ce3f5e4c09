//! Conflict rules. A conflict exists when the row changed on the server since the
//! version the device last saw and the values differ; the table's rule then picks
//! the winner. `merge` and `manual` are named here so the registry can carry them;
//! the engine refuses to start with a table using a rule it cannot apply yet.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::auth::Role;

/// A table's conflict rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    ServerWins,
    ClientWins,
    LatestWins,
    ManagerWins,
    Merge,
    Manual,
}

impl Rule {
    pub fn parse(s: &str) -> Option<Rule> {
        Some(match s {
            "server_wins" => Rule::ServerWins,
            "client_wins" => Rule::ClientWins,
            "latest_wins" => Rule::LatestWins,
            "manager_wins" => Rule::ManagerWins,
            "merge" => Rule::Merge,
            "manual" => Rule::Manual,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::ServerWins => "server_wins",
            Rule::ClientWins => "client_wins",
            Rule::LatestWins => "latest_wins",
            Rule::ManagerWins => "manager_wins",
            Rule::Merge => "merge",
            Rule::Manual => "manual",
        }
    }

    /// Whether this build can settle conflicts under the rule.
    pub fn is_supported(self) -> bool {
        !matches!(self, Rule::Merge | Rule::Manual)
    }
}

/// Who wins a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Winner {
    Server,
    Client,
}

/// What the rules need to know about both sides of a conflict.
#[derive(Clone, Debug)]
pub struct Sides {
    /// The device's time of change, already capped at the server clock at receipt.
    pub client_time: DateTime<Utc>,
    pub client_role: Role,
    pub server_time: DateTime<Utc>,
    /// Role of the last writer of the server row; `None` for writes made outside the
    /// API (operator SQL, imports), which count as the manager's.
    pub server_role: Option<Role>,
}

/// A device time later than the server's clock at receipt counts as the server's
/// clock, so a phone with a wrong clock cannot win forever.
pub fn cap_device_time(
    device_time: Option<DateTime<Utc>>,
    receipt: DateTime<Utc>,
) -> DateTime<Utc> {
    match device_time {
        Some(t) if t < receipt => t,
        _ => receipt,
    }
}

/// Decides a conflict under `rule`.
pub fn decide(rule: Rule, sides: &Sides) -> Winner {
    match rule {
        Rule::ServerWins | Rule::Merge | Rule::Manual => Winner::Server,
        Rule::ClientWins => Winner::Client,
        Rule::LatestWins => latest(sides),
        Rule::ManagerWins => {
            let server_role = sides.server_role.unwrap_or(Role::Manager);
            match (sides.client_role, server_role) {
                (Role::Manager, Role::Store) => Winner::Client,
                (Role::Store, Role::Manager) => Winner::Server,
                _ => latest(sides),
            }
        }
    }
}

/// Newer time wins; a tie goes to the server.
fn latest(sides: &Sides) -> Winner {
    if sides.client_time > sides.server_time {
        Winner::Client
    } else {
        Winner::Server
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn sides(client: i64, cr: Role, server: i64, sr: Option<Role>) -> Sides {
        Sides {
            client_time: t(client),
            client_role: cr,
            server_time: t(server),
            server_role: sr,
        }
    }

    #[test]
    fn latest_wins_compares_times_and_ties_go_to_server() {
        assert_eq!(
            decide(Rule::LatestWins, &sides(10, Role::Store, 5, None)),
            Winner::Client
        );
        assert_eq!(
            decide(Rule::LatestWins, &sides(5, Role::Store, 10, None)),
            Winner::Server
        );
        assert_eq!(
            decide(Rule::LatestWins, &sides(5, Role::Store, 5, None)),
            Winner::Server
        );
    }

    #[test]
    fn manager_wins_by_role_then_by_time() {
        let m = Role::Manager;
        let s = Role::Store;
        assert_eq!(
            decide(Rule::ManagerWins, &sides(0, m, 100, Some(s))),
            Winner::Client
        );
        assert_eq!(
            decide(Rule::ManagerWins, &sides(100, s, 0, Some(m))),
            Winner::Server
        );
        assert_eq!(
            decide(Rule::ManagerWins, &sides(100, s, 0, None)),
            Winner::Server
        );
        assert_eq!(
            decide(Rule::ManagerWins, &sides(100, m, 0, Some(m))),
            Winner::Client
        );
        assert_eq!(
            decide(Rule::ManagerWins, &sides(0, s, 100, Some(s))),
            Winner::Server
        );
    }

    #[test]
    fn fixed_rules() {
        assert_eq!(
            decide(Rule::ServerWins, &sides(100, Role::Manager, 0, None)),
            Winner::Server
        );
        assert_eq!(
            decide(Rule::ClientWins, &sides(0, Role::Store, 100, None)),
            Winner::Client
        );
    }

    #[test]
    fn future_device_times_are_capped_at_receipt() {
        assert_eq!(cap_device_time(Some(t(500)), t(100)), t(100));
        assert_eq!(cap_device_time(Some(t(50)), t(100)), t(50));
        assert_eq!(cap_device_time(None, t(100)), t(100));
    }
}
