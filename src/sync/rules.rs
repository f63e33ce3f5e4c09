//! Conflict rules. A conflict exists when the row changed on the server since the
//! version the device last saw and the values differ; the table's rule then settles
//! it: one side wins whole, the fields are merged three-way (`merge`, see
//! `sync::merge`), or the conflict stays open for a person (`manual`).

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

/// How a conflict is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// The server row stays.
    Server,
    /// The device's row is applied.
    Client,
    /// Three-way merge; fields both sides changed go to the device when
    /// `overlaps_to_client`.
    Merge { overlaps_to_client: bool },
    /// The server row stays and the conflict is kept open for a person.
    Manual,
}

/// Settles a conflict under `rule`. For `merge` tables, fields both sides changed
/// follow `latest_wins`.
pub fn settlement(rule: Rule, sides: &Sides) -> Settlement {
    match rule {
        Rule::Merge => Settlement::Merge {
            overlaps_to_client: latest(sides) == Winner::Client,
        },
        Rule::Manual => Settlement::Manual,
        whole => match decide(whole, sides) {
            Winner::Server => Settlement::Server,
            Winner::Client => Settlement::Client,
        },
    }
}

/// A conflict strategy a BridgeCore client asks for, per push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    ServerWins,
    ClientWins,
    NewestWins,
    Merge,
    Manual,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "server_wins" => Strategy::ServerWins,
            "client_wins" => Strategy::ClientWins,
            "newest_wins" => Strategy::NewestWins,
            "merge" => Strategy::Merge,
            "manual" => Strategy::Manual,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::ServerWins => "server_wins",
            Strategy::ClientWins => "client_wins",
            Strategy::NewestWins => "newest_wins",
            Strategy::Merge => "merge",
            Strategy::Manual => "manual",
        }
    }
}

/// Settles a conflict under the strategy a device asked for, bounded by the table's
/// rule: the device never wins where the rule says it loses. `manual` tables always
/// open a conflict; `merge` tables merge, overlaps by the newer change.
pub fn bounded(strategy: Strategy, rule: Rule, sides: &Sides) -> Settlement {
    let verdict = decide(rule, sides);
    match (rule, strategy) {
        (Rule::Manual, _) | (_, Strategy::Manual) => Settlement::Manual,
        (_, Strategy::ServerWins) => Settlement::Server,
        (Rule::Merge, _) => Settlement::Merge {
            overlaps_to_client: latest(sides) == Winner::Client,
        },
        (_, Strategy::Merge) => Settlement::Merge {
            overlaps_to_client: verdict == Winner::Client,
        },
        (_, Strategy::ClientWins) => match verdict {
            Winner::Client => Settlement::Client,
            Winner::Server => Settlement::Server,
        },
        (_, Strategy::NewestWins) => match (latest(sides), verdict) {
            (Winner::Client, Winner::Client) => Settlement::Client,
            _ => Settlement::Server,
        },
    }
}

/// Which side wins a conflict whole under `rule` (`merge` counts as `latest_wins`,
/// `manual` as `server_wins`: what each does to the fields both sides changed).
pub fn decide(rule: Rule, sides: &Sides) -> Winner {
    match rule {
        Rule::ServerWins | Rule::Manual => Winner::Server,
        Rule::Merge => latest(sides),
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
    fn merge_and_manual_settle_apart() {
        let newer = sides(10, Role::Store, 5, None);
        let older = sides(5, Role::Store, 10, None);
        assert_eq!(
            settlement(Rule::Merge, &newer),
            Settlement::Merge {
                overlaps_to_client: true
            }
        );
        assert_eq!(
            settlement(Rule::Merge, &older),
            Settlement::Merge {
                overlaps_to_client: false
            }
        );
        assert_eq!(settlement(Rule::Manual, &newer), Settlement::Manual);
        assert_eq!(settlement(Rule::ClientWins, &older), Settlement::Client);
        assert_eq!(settlement(Rule::ServerWins, &newer), Settlement::Server);
    }

    #[test]
    fn strategies_are_bounded_by_the_rule() {
        let (m, st) = (Role::Manager, Role::Store);
        // A store device asking client_wins on a manager's row of a manager_wins table.
        let managers_row = sides(100, st, 0, Some(m));
        assert_eq!(
            bounded(Strategy::ClientWins, Rule::ManagerWins, &managers_row),
            Settlement::Server
        );
        assert_eq!(
            bounded(
                Strategy::ClientWins,
                Rule::ServerWins,
                &sides(100, m, 0, None)
            ),
            Settlement::Server
        );
        assert_eq!(
            bounded(
                Strategy::ClientWins,
                Rule::ClientWins,
                &sides(0, st, 100, None)
            ),
            Settlement::Client
        );
        // newest_wins: the newer side, still within the rule.
        let newer = sides(100, st, 0, Some(st));
        assert_eq!(
            bounded(Strategy::NewestWins, Rule::ClientWins, &newer),
            Settlement::Client
        );
        let older = sides(0, st, 100, Some(st));
        assert_eq!(
            bounded(Strategy::NewestWins, Rule::ClientWins, &older),
            Settlement::Server
        );
        assert_eq!(
            bounded(Strategy::NewestWins, Rule::ServerWins, &newer),
            Settlement::Server
        );
        // server_wins and manual are always honoured; manual tables always open.
        assert_eq!(
            bounded(Strategy::ServerWins, Rule::ClientWins, &newer),
            Settlement::Server
        );
        assert_eq!(
            bounded(Strategy::Manual, Rule::ClientWins, &newer),
            Settlement::Manual
        );
        assert_eq!(
            bounded(Strategy::ClientWins, Rule::Manual, &newer),
            Settlement::Manual
        );
        // merge: overlaps go to the rule.
        assert_eq!(
            bounded(Strategy::Merge, Rule::ManagerWins, &managers_row),
            Settlement::Merge {
                overlaps_to_client: false
            }
        );
        assert_eq!(
            bounded(Strategy::Merge, Rule::ClientWins, &older),
            Settlement::Merge {
                overlaps_to_client: true
            }
        );
        for s in [
            "server_wins",
            "client_wins",
            "newest_wins",
            "merge",
            "manual",
        ] {
            assert_eq!(Strategy::parse(s).map(Strategy::as_str), Some(s));
        }
        assert_eq!(Strategy::parse("latest_wins"), None);
    }

    #[test]
    fn future_device_times_are_capped_at_receipt() {
        assert_eq!(cap_device_time(Some(t(500)), t(100)), t(100));
        assert_eq!(cap_device_time(Some(t(50)), t(100)), t(50));
        assert_eq!(cap_device_time(None, t(100)), t(100));
    }
}
