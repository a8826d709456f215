//! The exchange's configuration: runtime parameters, accounts and FIX sessions, in TOML.
//!
//! The embedded default (`gateway/exchange.toml`) is what `exchange` runs with when no
//! `--config` is given.

use std::path::{Path, PathBuf};

use engine::journal::SyncPolicy;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::config::{AcceptorConfig, ConfigError, GatewayConfig, SessionConfig};

/// The embedded default configuration.
pub const DEFAULT_EXCHANGE_TOML: &str = include_str!("../../exchange.toml");

/// Runtime parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Where the journal and the session stores live.
    pub data_dir: PathBuf,
    /// Journal sync policy: `batch`, `none` or an interval (`10ms`).
    #[serde(default = "default_sync")]
    pub journal_sync: String,
    /// Journal segment size in MiB.
    #[serde(default = "default_segment_mb")]
    pub journal_segment_mb: u64,
    /// Whether journal segments are zero-filled ahead of time, so a sync writes data only.
    #[serde(default = "default_true")]
    pub journal_preallocate: bool,
    /// Orders one session may send per second.
    #[serde(default = "default_rate")]
    pub max_orders_per_second: u32,
    /// Commands waiting for the engine.
    #[serde(default = "default_queue")]
    pub engine_queue: usize,
    /// Journal records between snapshots of the engine and market data (0: none); a restart
    /// replays the journal after the newest snapshot only. After a snapshot over 64 MiB the
    /// next also waits for as many journal bytes as it held.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
    /// Snapshots kept on disk.
    #[serde(default = "default_snapshots_kept")]
    pub snapshots_kept: usize,
    /// After each snapshot, take out the journal segments no restart needs any more, as
    /// `exchange journal trim` does: `"off"`, `"delete"`, or `"archive:DIR"` (relative to the
    /// data directory) to move them there.
    #[serde(default = "default_journal_trim")]
    pub journal_trim: String,
    /// Whether the exchange opens today's trading session when it starts (when false, it
    /// starts closed and orders are rejected: no trading outside the session).
    #[serde(default = "default_true")]
    pub open_on_start: bool,
    /// Trading hours as `HH:MM[:SS]-HH:MM[:SS]` in UTC (every day; a range that wraps past
    /// midnight is allowed). When set, the exchange opens and closes the trading session at
    /// those times (the close expires Day orders) and `open_on_start` is ignored.
    #[serde(default)]
    pub trading_hours: Option<String>,
}

/// When the trading session is open: seconds since UTC midnight, `[open, close)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Opening time.
    pub open_s: u32,
    /// Closing time.
    pub close_s: u32,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    /// `09:30-16:00` or `09:30:00-16:00:00`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("trading hours {s:?}: expected HH:MM[:SS]-HH:MM[:SS] (UTC)");
        let time = |t: &str| -> Result<u32, String> {
            let parts: Vec<u32> = t
                .trim()
                .split(':')
                .map(|p| p.parse::<u32>().map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            match parts[..] {
                [h, m] if h < 24 && m < 60 => Ok(h * 3600 + m * 60),
                [h, m, sec] if h < 24 && m < 60 && sec < 60 => Ok(h * 3600 + m * 60 + sec),
                _ => Err(bad()),
            }
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (open_s, close_s) = (time(a)?, time(b)?);
        if open_s == close_s {
            return Err(format!(
                "trading hours {s:?}: opening and closing at the same time"
            ));
        }
        Ok(Schedule { open_s, close_s })
    }
}

impl Schedule {
    /// Whether trading is open at `ms` (since the Unix epoch).
    pub fn is_open(&self, ms: i64) -> bool {
        let t = (ms.div_euclid(1000).rem_euclid(86_400)) as u32;
        if self.open_s < self.close_s {
            (self.open_s..self.close_s).contains(&t)
        } else {
            t >= self.open_s || t < self.close_s
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_sync() -> String {
    "batch".into()
}
fn default_segment_mb() -> u64 {
    256
}
fn default_rate() -> u32 {
    100_000
}
fn default_queue() -> usize {
    262_144
}
fn default_snapshot_every() -> u64 {
    1_000_000
}
fn default_journal_trim() -> String {
    "off".into()
}
fn default_snapshots_kept() -> usize {
    2
}

/// The HTTP API's listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to bind.
    #[serde(default = "default_http_address")]
    pub address: String,
    /// TCP port (0 picks a free port).
    pub port: u16,
}

fn default_http_address() -> String {
    "127.0.0.1".into()
}

/// The reporting database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportingConfig {
    /// `sqlite:PATH` (relative to the data directory), `postgres://user:pass@host/db`, or
    /// `none` (no reporting thread: another process follows the journal).
    #[serde(default = "default_database")]
    pub database: String,
    /// Whether the exchange runs the reporting flow itself. When false, another process
    /// (`exchange reporting`) follows the journal into the database; the exchange still reads
    /// it (the HTTP API, its position for `/v1/status` and the journal trim), so the reporting
    /// flow's CPU can be on another host.
    #[serde(default = "default_true")]
    pub in_process: bool,
}

fn default_database() -> String {
    "sqlite:reporting.db".into()
}

/// An HTTP API key: brokers that do not speak FIX send orders and read executions with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who the key belongs to (shown in logs).
    pub name: String,
    /// `sha256$HEX` of the key (`exchange hash-api-key KEY` prints it).
    #[serde(rename = "KeyHash")]
    pub key_hash: String,
    /// Accounts the key may trade and read, as for a FIX session.
    #[serde(rename = "Accounts", default)]
    pub accounts: Vec<String>,
}

/// A trading account and its opening balances.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// The name clients put in Account (1).
    pub name: String,
    /// Cash deposited when the journal is empty, as a decimal amount.
    #[serde(default)]
    pub cash: Decimal,
    /// Shares of every instrument deposited when the journal is empty.
    #[serde(default)]
    pub shares: u64,
}

/// `count` identical sessions named `prefix001`, `prefix002`, ..., each with its own account
/// of the same name (for load generation and tests).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionGroup {
    /// Name prefix of the TargetCompIDs, usernames (lower case) and accounts.
    pub prefix: String,
    /// Number of sessions.
    pub count: u32,
    /// BeginString.
    #[serde(rename = "BeginString")]
    pub begin_string: String,
    /// DataDictionary.
    #[serde(rename = "DataDictionary")]
    pub data_dictionary: PathBuf,
    /// The shared password's hash.
    #[serde(rename = "PasswordHash")]
    pub password_hash: String,
    /// Opening cash of each account.
    #[serde(default)]
    pub cash: Decimal,
    /// Opening shares of each instrument in each account.
    #[serde(default)]
    pub shares: u64,
    /// The sessions' role (`order-entry` by default; market-data sessions get no account).
    #[serde(rename = "Role", default)]
    pub role: Option<String>,
    /// Cancel each session's working orders when it disconnects (see the session option).
    #[serde(rename = "CancelOnDisconnect", default)]
    pub cancel_on_disconnect: bool,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Runtime parameters.
    pub exchange: Params,
    /// The FIX listener.
    pub acceptor: AcceptorConfig,
    /// The HTTP API; none when absent.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// The reporting database; SQLite in the data directory when absent.
    #[serde(default)]
    pub reporting: Option<ReportingConfig>,
    /// HTTP API keys.
    #[serde(rename = "api_key", default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// Accounts.
    #[serde(rename = "account", default)]
    pub accounts: Vec<AccountConfig>,
    /// FIX sessions.
    #[serde(rename = "session", default)]
    pub sessions: Vec<SessionConfig>,
    /// Groups of generated sessions.
    #[serde(rename = "session_group", default)]
    pub session_groups: Vec<SessionGroup>,
}

impl ExchangeConfig {
    /// Parses a configuration; relative paths are taken from `base`, and `data_dir` and the
    /// session store path can be overridden.
    pub fn from_toml(text: &str, base: &Path) -> Result<ExchangeConfig, ConfigError> {
        let mut c: ExchangeConfig = toml::from_str(text)?;
        if c.exchange.data_dir.is_relative() {
            c.exchange.data_dir = base.join(&c.exchange.data_dir);
        }
        for g in std::mem::take(&mut c.session_groups) {
            for i in 1..=g.count {
                let name = format!("{}{i:03}", g.prefix);
                let trades = matches!(g.role.as_deref(), None | Some("order-entry"));
                if trades {
                    c.accounts.push(AccountConfig {
                        name: name.clone(),
                        cash: g.cash,
                        shares: g.shares,
                    });
                }
                c.sessions.push(SessionConfig {
                    begin_string: g.begin_string.clone(),
                    sender_comp_id: "EXCH".into(),
                    target_comp_id: name.clone(),
                    data_dictionary: Some(g.data_dictionary.clone()),
                    transport_dictionary: None,
                    app_dictionary: None,
                    default_appl_ver_id: None,
                    reset_on_logon: false,
                    heartbeat_min: 1,
                    heartbeat_max: 300,
                    max_latency: 120,
                    username: Some(name.to_lowercase()),
                    password_hash: Some(g.password_hash.clone()),
                    accounts: if trades { vec![name] } else { Vec::new() },
                    role: g.role.clone(),
                    persist_messages: None,
                    send_buffer_size: None,
                    cancel_on_disconnect: g.cancel_on_disconnect,
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for a in &c.accounts {
            if !seen.insert(a.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "account {} is configured twice",
                    a.name
                )));
            }
            if a.cash < Decimal::ZERO {
                return Err(ConfigError::Invalid(format!(
                    "account {}: negative cash",
                    a.name
                )));
            }
        }
        for s in &c.sessions {
            if s.role()? != crate::config::Role::OrderEntry && s.cancel_on_disconnect {
                return Err(ConfigError::Invalid(format!(
                    "session {}: CancelOnDisconnect applies to order-entry sessions",
                    s.target_comp_id
                )));
            }
            for a in &s.accounts {
                if !seen.contains(a.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "session {}: unknown account {a}",
                        s.target_comp_id
                    )));
                }
            }
        }
        for k in &c.api_keys {
            crate::auth::ApiKeyHash::parse(&k.key_hash)
                .map_err(|e| ConfigError::Invalid(format!("api key {}: KeyHash: {e}", k.name)))?;
            for a in &k.accounts {
                if !seen.contains(a.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "api key {}: unknown account {a}",
                        k.name
                    )));
                }
            }
        }
        c.sync_policy()?;
        c.schedule()?;
        crate::config::resolve_dictionary_paths(&mut c.sessions, base);
        Ok(c)
    }

    /// The embedded default.
    pub fn embedded(base: &Path) -> ExchangeConfig {
        ExchangeConfig::from_toml(DEFAULT_EXCHANGE_TOML, base)
            .expect("the embedded configuration is valid")
    }

    /// Whether the exchange runs its reporting flow itself (see [`ReportingConfig::in_process`]).
    pub fn reporting_in_process(&self) -> bool {
        self.reporting.as_ref().is_none_or(|r| r.in_process)
    }

    /// The reporting database's URL; a relative SQLite path is taken from the data directory.
    pub fn database_url(&self) -> String {
        let url = self
            .reporting
            .as_ref()
            .map_or_else(default_database, |r| r.database.clone());
        match url.strip_prefix("sqlite:") {
            Some(path) if Path::new(path).is_relative() => {
                format!("sqlite:{}", self.exchange.data_dir.join(path).display())
            }
            _ => url,
        }
    }

    /// The trading-hours schedule, if one is configured.
    pub fn schedule(&self) -> Result<Option<Schedule>, ConfigError> {
        self.exchange
            .trading_hours
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ConfigError::Invalid)
    }

    /// The journal's sync policy.
    pub fn sync_policy(&self) -> Result<SyncPolicy, ConfigError> {
        self.exchange
            .journal_sync
            .parse()
            .map_err(ConfigError::Invalid)
    }

    /// What to do with the journal after each snapshot (`journal_trim`): `None` to keep it
    /// all, `Some(None)` to delete what no restart needs, `Some(Some(dir))` to move it there.
    pub fn journal_trim(&self) -> Result<Option<Option<PathBuf>>, ConfigError> {
        let t = self.exchange.journal_trim.trim();
        match t {
            "off" => Ok(None),
            "delete" => Ok(Some(None)),
            _ => match t.strip_prefix("archive:") {
                Some(dir) if !dir.is_empty() => Ok(Some(Some(self.exchange.data_dir.join(dir)))),
                _ => Err(ConfigError::Invalid(format!(
                    "journal_trim = {t:?}: expected \"off\", \"delete\" or \"archive:DIR\""
                ))),
            },
        }
    }

    /// The session part, for the session layer; a relative `FileStorePath` is taken from the
    /// data directory.
    pub fn gateway(&self) -> GatewayConfig {
        let mut acceptor = self.acceptor.clone();
        acceptor.store_path = self.exchange.data_dir.join(&acceptor.store_path);
        GatewayConfig {
            acceptor,
            sessions: self.sessions.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_configuration_resolves() {
        let c = ExchangeConfig::embedded(Path::new("/x"));
        assert_eq!(c.accounts.len(), 2 + 32);
        assert_eq!(c.sessions.len(), 4 + 32);
        assert_eq!(c.sessions[4].target_comp_id, "LOAD001");
        assert_eq!(c.sessions[4].accounts, ["LOAD001"]);
        assert!(c.sessions.iter().all(|s| !s.cancel_on_disconnect));
        let gateway = c.gateway();
        assert_eq!(gateway.acceptor.store_path, Path::new("/x/data/sessions"));
        let sessions = gateway.resolve().unwrap();
        assert!(sessions.iter().all(|s| s.settings.authenticator.is_some()));
    }

    #[test]
    fn journal_trim_is_off_delete_or_an_archive_in_the_data_directory() {
        let with = |v: &str| {
            let text = DEFAULT_EXCHANGE_TOML
                .replace("journal_trim = \"off\"", &format!("journal_trim = {v:?}"));
            ExchangeConfig::from_toml(&text, Path::new("/base"))
                .unwrap()
                .journal_trim()
        };
        assert_eq!(with("off").unwrap(), None);
        assert_eq!(with("delete").unwrap(), Some(None));
        assert_eq!(
            with("archive:old").unwrap(),
            Some(Some(Path::new("/base/data/old").to_path_buf()))
        );
        for bad in ["archive:", "yes", ""] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_session_groups_cancel_on_disconnect_reaches_each_session() {
        let text = DEFAULT_EXCHANGE_TOML.replace(
            "prefix = \"LOAD\"",
            "prefix = \"LOAD\"\nCancelOnDisconnect = true",
        );
        let c = ExchangeConfig::from_toml(&text, Path::new("/x")).unwrap();
        let load: Vec<_> = c
            .sessions
            .iter()
            .filter(|s| s.target_comp_id.starts_with("LOAD"))
            .collect();
        assert_eq!(load.len(), 32);
        assert!(load.iter().all(|s| s.cancel_on_disconnect));
        assert!(
            c.sessions
                .iter()
                .filter(|s| !s.target_comp_id.starts_with("LOAD"))
                .all(|s| !s.cancel_on_disconnect)
        );
    }

    #[test]
    fn trading_hours_parse_and_wrap_past_midnight() {
        let day: Schedule = "09:30-16:00".parse().unwrap();
        let at = |h: i64, m: i64| (h * 3600 + m * 60) * 1000 + 86_400_000 * 20_000;
        assert!(!day.is_open(at(9, 29)));
        assert!(day.is_open(at(9, 30)));
        assert!(day.is_open(at(15, 59)));
        assert!(!day.is_open(at(16, 0)));
        let night: Schedule = "22:00:00-02:00:30".parse().unwrap();
        assert!(night.is_open(at(23, 0)));
        assert!(night.is_open(at(2, 0)));
        assert!(!night.is_open(at(3, 0)));
        for bad in ["9-16", "09:30", "25:00-26:00", "10:00-10:00", "a:b-c:d"] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        let base = DEFAULT_EXCHANGE_TOML;
        let cases = [
            (
                base.replace("journal_sync = \"batch\"", "journal_sync = \"often\""),
                "journal sync",
            ),
            (
                base.replace("Accounts = [\"DEMO1\"]", "Accounts = [\"NOPE\"]"),
                "unknown account NOPE",
            ),
            (
                base.replace("name = \"DEMO2\"", "name = \"DEMO1\""),
                "twice",
            ),
            (
                base.replace(
                    "Role = \"drop-copy\"",
                    "Role = \"drop-copy\"\nCancelOnDisconnect = true",
                ),
                "CancelOnDisconnect applies to order-entry sessions",
            ),
        ];
        for (text, want) in cases {
            let err = ExchangeConfig::from_toml(&text, Path::new("/x")).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }
}
