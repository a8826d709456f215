//! Gateway configuration in TOML, with QuickFIX-like per-session keys.
//!
//! ```toml
//! [acceptor]
//! SocketAcceptPort = 9876
//! FileStorePath = "data/sessions"
//!
//! [[session]]
//! BeginString = "FIX.4.4"
//! SenderCompID = "EXCH"
//! TargetCompID = "CLIENT1"
//! DataDictionary = "fix-specs/FIX44.xml"
//! ResetOnLogon = false
//! HeartBtIntMin = 5
//! HeartBtIntMax = 120
//! Username = "client1"
//! PasswordHash = "..."
//! Accounts = ["ACC1", "ACC2"]
//! ```
//!
//! FIXT.1.1 sessions name `TransportDataDictionary` and `AppDataDictionary` instead of
//! `DataDictionary`, and their `DefaultApplVerID`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::dictionary::Dictionary;
use crate::session::{Authenticator, Dictionaries, SessionKey, SessionSettings};

/// The acceptor's listening socket and storage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptorConfig {
    /// TCP port to listen on.
    #[serde(rename = "SocketAcceptPort")]
    pub port: u16,
    /// Address to bind (default all interfaces).
    #[serde(rename = "SocketAcceptAddress", default = "default_address")]
    pub address: String,
    /// Directory of the session stores.
    #[serde(rename = "FileStorePath")]
    pub store_path: PathBuf,
    /// fsync the session store on every message.
    #[serde(rename = "FileStoreSync", default)]
    pub store_sync: bool,
}

/// The exchange's own dictionaries from `fix-specs/`, built into the binary: a session names
/// one as `builtin:FIX44.xml`, `builtin:FIXT11.xml` or `builtin:FIX50SP2.xml`.
pub const BUILTIN_DICTIONARIES: [(&str, &str); 3] = [
    ("FIX44.xml", include_str!("../../fix-specs/FIX44.xml")),
    ("FIXT11.xml", include_str!("../../fix-specs/FIXT11.xml")),
    ("FIX50SP2.xml", include_str!("../../fix-specs/FIX50SP2.xml")),
];

/// The XML of a `builtin:` dictionary path.
pub fn builtin_dictionary(p: &Path) -> Option<&'static str> {
    let name = p.to_str()?.strip_prefix("builtin:")?;
    BUILTIN_DICTIONARIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, xml)| *xml)
}

/// Makes the sessions' relative dictionary paths relative to `base` (`builtin:` names stay).
pub fn resolve_dictionary_paths(sessions: &mut [SessionConfig], base: &Path) {
    for s in sessions {
        for p in [
            &mut s.data_dictionary,
            &mut s.transport_dictionary,
            &mut s.app_dictionary,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() && builtin_dictionary(p).is_none() {
                *p = base.join(&*p);
            }
        }
    }
}

/// How far ahead a session that keeps no messages writes its sender sequence number.
pub const SENDER_BLOCK: u64 = 1024;

impl AcceptorConfig {
    /// Opens the on-disk store of a session, in its own directory under `FileStorePath`.
    pub fn open_store(
        &self,
        settings: &SessionSettings,
    ) -> Result<crate::store::FileStore, ConfigError> {
        let key = &settings.key;
        let dir = self.store_path.join(format!(
            "{}-{}-{}",
            key.begin_string, key.sender_comp_id, key.target_comp_id
        ));
        let store = crate::store::FileStore::open(&dir, self.store_sync)
            .map_err(|e| ConfigError::Invalid(format!("opening {}: {e}", dir.display())))?;
        Ok(if settings.persist_messages {
            store
        } else {
            store.with_sender_block(SENDER_BLOCK)
        })
    }
}

fn default_address() -> String {
    "0.0.0.0".into()
}

/// One session's keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// `FIX.4.4` or `FIXT.1.1`.
    #[serde(rename = "BeginString")]
    pub begin_string: String,
    /// Our CompID.
    #[serde(rename = "SenderCompID")]
    pub sender_comp_id: String,
    /// The counterparty's CompID.
    #[serde(rename = "TargetCompID")]
    pub target_comp_id: String,
    /// Dictionary for FIX.4.x sessions.
    #[serde(rename = "DataDictionary", default)]
    pub data_dictionary: Option<PathBuf>,
    /// Transport dictionary for FIXT.1.1 sessions.
    #[serde(rename = "TransportDataDictionary", default)]
    pub transport_dictionary: Option<PathBuf>,
    /// Application dictionary for FIXT.1.1 sessions.
    #[serde(rename = "AppDataDictionary", default)]
    pub app_dictionary: Option<PathBuf>,
    /// DefaultApplVerID sent on Logon (FIXT.1.1).
    #[serde(rename = "DefaultApplVerID", default)]
    pub default_appl_ver_id: Option<String>,
    /// Reset sequence numbers on every Logon.
    #[serde(rename = "ResetOnLogon", default)]
    pub reset_on_logon: bool,
    /// Smallest HeartBtInt accepted.
    #[serde(rename = "HeartBtIntMin", default = "default_hb_min")]
    pub heartbeat_min: u64,
    /// Largest HeartBtInt accepted.
    #[serde(rename = "HeartBtIntMax", default = "default_hb_max")]
    pub heartbeat_max: u64,
    /// SendingTime accuracy window in seconds.
    #[serde(rename = "MaxLatency", default = "default_latency")]
    pub max_latency: u64,
    /// Username expected in the Logon (553).
    #[serde(rename = "Username", default)]
    pub username: Option<String>,
    /// Salted hash of the password expected in the Logon (554), see [`crate::auth`].
    #[serde(rename = "PasswordHash", default)]
    pub password_hash: Option<String>,
    /// Accounts this session may trade for.
    #[serde(rename = "Accounts", default)]
    pub accounts: Vec<String>,
    /// What the session is for: `order-entry` (default), `market-data` or `drop-copy`.
    #[serde(rename = "Role", default)]
    pub role: Option<String>,
    /// Keep sent messages for resend; default true except on market-data sessions.
    #[serde(rename = "PersistMessages", default)]
    pub persist_messages: Option<bool>,
    /// Kernel send buffer of the session's connections, bytes; default 65536 on market-data
    /// sessions, the system's default on the others.
    #[serde(rename = "SendBufferSize", default)]
    pub send_buffer_size: Option<usize>,
    /// Cancel the session's working orders when it logs out or its connection drops (an
    /// order-entry session's option; not when the exchange itself shuts down).
    #[serde(rename = "CancelOnDisconnect", default)]
    pub cancel_on_disconnect: bool,
}

/// Kernel send buffer of a market-data connection unless configured.
pub const MARKET_DATA_SEND_BUFFER: usize = 64 * 1024;

/// What a session is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Role {
    /// Orders in, execution reports out.
    #[default]
    OrderEntry,
    /// MarketDataRequest in; snapshots, incremental refreshes and trading status out.
    MarketData,
    /// Read-only copies of the execution reports of the accounts it covers.
    DropCopy,
}

impl SessionConfig {
    /// The session's role.
    pub fn role(&self) -> Result<Role, ConfigError> {
        match self.role.as_deref() {
            None | Some("order-entry") => Ok(Role::OrderEntry),
            Some("market-data") => Ok(Role::MarketData),
            Some("drop-copy") => Ok(Role::DropCopy),
            Some(other) => Err(ConfigError::Invalid(format!(
                "session {}: Role {other:?} is not order-entry, market-data or drop-copy",
                self.target_comp_id
            ))),
        }
    }
}

fn default_hb_min() -> u64 {
    1
}
fn default_hb_max() -> u64 {
    300
}
fn default_latency() -> u64 {
    120
}

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Listening socket and storage.
    pub acceptor: AcceptorConfig,
    /// Sessions.
    #[serde(rename = "session", default)]
    pub sessions: Vec<SessionConfig>,
}

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// TOML syntax or shape.
    #[error("invalid gateway configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// A dictionary failed to load.
    #[error("session {session}: {source}")]
    Dictionary {
        /// Which session.
        session: String,
        /// Why.
        source: crate::dictionary::DictionaryError,
    },
    /// Anything else.
    #[error("invalid gateway configuration: {0}")]
    Invalid(String),
}

/// A session ready to run: its settings and dictionaries.
pub struct ResolvedSession {
    /// Settings.
    pub settings: Arc<SessionSettings>,
    /// Dictionaries.
    pub dictionaries: Arc<Dictionaries>,
    /// The raw configuration.
    pub config: SessionConfig,
}

impl GatewayConfig {
    /// Parses TOML; relative dictionary paths are resolved against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<GatewayConfig, ConfigError> {
        let mut c: GatewayConfig = toml::from_str(text)?;
        resolve_dictionary_paths(&mut c.sessions, base);
        if c.acceptor.store_path.is_relative() {
            c.acceptor.store_path = base.join(&c.acceptor.store_path);
        }
        Ok(c)
    }

    /// Loads dictionaries (each file once) and builds every session's settings.
    pub fn resolve(&self) -> Result<Vec<ResolvedSession>, ConfigError> {
        let mut cache: HashMap<PathBuf, Dictionary> = HashMap::new();
        let mut load = |session: &str, p: &Path| -> Result<Dictionary, ConfigError> {
            if let Some(d) = cache.get(p) {
                return Ok(d.clone());
            }
            let d = match builtin_dictionary(p) {
                Some(xml) => Dictionary::parse(xml),
                None => Dictionary::load(p),
            }
            .map_err(|source| ConfigError::Dictionary {
                session: session.into(),
                source,
            })?;
            cache.insert(p.to_path_buf(), d.clone());
            Ok(d)
        };
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in &self.sessions {
            let key = SessionKey {
                begin_string: s.begin_string.clone(),
                sender_comp_id: s.sender_comp_id.clone(),
                target_comp_id: s.target_comp_id.clone(),
            };
            let name = key.to_string();
            if !seen.insert(key.clone()) {
                return Err(ConfigError::Invalid(format!(
                    "session {name} is configured twice"
                )));
            }
            let dictionaries = if s.begin_string == "FIXT.1.1" {
                let (Some(t), Some(a)) = (&s.transport_dictionary, &s.app_dictionary) else {
                    return Err(ConfigError::Invalid(format!(
                        "{name}: FIXT.1.1 needs TransportDataDictionary and AppDataDictionary"
                    )));
                };
                if s.default_appl_ver_id.is_none() {
                    return Err(ConfigError::Invalid(format!(
                        "{name}: FIXT.1.1 needs DefaultApplVerID"
                    )));
                }
                Dictionaries {
                    session: load(&name, t)?,
                    app: load(&name, a)?,
                }
            } else {
                let Some(d) = &s.data_dictionary else {
                    return Err(ConfigError::Invalid(format!(
                        "{name}: DataDictionary is missing"
                    )));
                };
                let d = load(&name, d)?;
                Dictionaries {
                    session: d.clone(),
                    app: d,
                }
            };
            if dictionaries.session.version != s.begin_string {
                return Err(ConfigError::Invalid(format!(
                    "{name}: the dictionary describes {} but the session speaks {}",
                    dictionaries.session.version, s.begin_string
                )));
            }
            let role = s.role()?;
            let mut settings = SessionSettings::new(key);
            settings.persist_messages = s.persist_messages.unwrap_or(role != Role::MarketData);
            settings.background = role == Role::MarketData;
            settings.send_buffer = s
                .send_buffer_size
                .or((role == Role::MarketData).then_some(MARKET_DATA_SEND_BUFFER));
            settings.reset_on_logon = s.reset_on_logon;
            settings.default_appl_ver_id = s.default_appl_ver_id.clone();
            settings.min_heartbeat_secs = s.heartbeat_min;
            settings.max_heartbeat_secs = s.heartbeat_max;
            settings.max_latency_ms = s.max_latency as i64 * 1000;
            if let Some(hash) = &s.password_hash {
                let user = s.username.clone().unwrap_or_default();
                let hash = crate::auth::PasswordHash::parse(hash)
                    .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))?;
                let check = crate::auth::CredentialCheck::new(user, hash);
                let check: Authenticator = Arc::new(move |u: &str, p: &str| check.verify(u, p));
                settings.authenticator = Some(check);
            }
            out.push(ResolvedSession {
                settings: Arc::new(settings),
                dictionaries: Arc::new(dictionaries),
                config: s.clone(),
            });
        }
        Ok(out)
    }
}
