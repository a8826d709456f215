//! Engine configuration: the instrument table, limits and risk overrides, loaded from TOML.
//!
//! Decimal prices live here, at the edge; everything the engine keeps is integer price units.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::types::{AccountId, Cash, PRICE_SCALE, Price, Qty, SymbolId};

/// The embedded default configuration (100 US-style symbols).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../default-instruments.toml");

/// Self-trade prevention mode: what happens when an order would trade with its own account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StpMode {
    /// Cancel the resting order and keep matching the incoming one (default).
    CancelResting,
    /// Cancel the rest of the incoming order.
    CancelIncoming,
    /// Cancel both the resting order and the rest of the incoming one.
    CancelBoth,
}

/// A tradable instrument with its trading rules, in integer units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instrument {
    /// Dense index of the instrument.
    pub id: SymbolId,
    /// Ticker symbol.
    pub symbol: String,
    /// Tick size in price units.
    pub tick: Price,
    /// Lot size in shares.
    pub lot: Qty,
    /// Reference price (previous close) in price units.
    pub reference_price: Price,
    /// Lowest limit price accepted (the band's lower edge, on a tick).
    pub min_price: Price,
    /// Highest limit price accepted (the band's upper edge, on a tick).
    pub max_price: Price,
    /// Market-order collar in basis points beyond the best opposite price.
    pub collar_bps: u32,
    /// Default per-account daily traded-quantity limit.
    pub daily_limit: Qty,
    /// Maximum quantity of one order.
    pub max_order_qty: Qty,
    /// Maximum notional of one order, in price units.
    pub max_notional: Cash,
}

impl Instrument {
    /// Number of ticks between `min_price` and `max_price` inclusive.
    pub fn ladder_len(&self) -> usize {
        ((self.max_price - self.min_price) / self.tick) as usize + 1
    }
}

/// Engine-wide limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open orders one account may have working at once.
    pub max_open_orders_per_account: u32,
    /// Resting orders across all books.
    pub max_resting_orders: u32,
    /// Number of accounts (ids `0..max_accounts`).
    pub max_accounts: u32,
    /// Orders expected per trading day: the ClOrdID index is sized for this many up front;
    /// beyond it the index grows a few slots per order (see `index::ClOrdIndex`).
    pub expected_orders_per_day: u32,
    /// Self-trade prevention mode.
    pub stp: StpMode,
}

/// A per-account, per-symbol daily limit that replaces the instrument's default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountLimit {
    /// The account.
    pub account: AccountId,
    /// The instrument.
    pub symbol: SymbolId,
    /// Daily traded-quantity limit.
    pub daily_limit: Qty,
}

/// The complete engine configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Instruments, indexed by `SymbolId`.
    pub instruments: Vec<Instrument>,
    /// Engine-wide limits.
    pub limits: Limits,
    /// Daily-limit overrides.
    pub account_limits: Vec<AccountLimit>,
}

/// A configuration that could not be loaded, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML did not parse or did not have the expected shape.
    #[error("invalid engine configuration: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is out of range or inconsistent.
    #[error("invalid engine configuration: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    limits: RawLimits,
    defaults: RawInstrument,
    instruments: Vec<RawInstrument>,
    #[serde(default)]
    account_limits: Vec<RawAccountLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_open_orders_per_account: u32,
    max_resting_orders: u32,
    max_accounts: u32,
    #[serde(default)]
    expected_orders_per_day: u32,
    self_trade_prevention: StpMode,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInstrument {
    symbol: Option<String>,
    reference_price: Option<String>,
    tick_size: Option<String>,
    lot_size: Option<Qty>,
    band_percent: Option<String>,
    collar_percent: Option<String>,
    daily_limit: Option<Qty>,
    max_order_qty: Option<Qty>,
    max_notional: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccountLimit {
    account: u32,
    symbol: String,
    daily_limit: Qty,
}

/// Converts a decimal amount of currency to price units, refusing sub-unit precision.
pub fn decimal_to_units(d: Decimal) -> Option<i64> {
    let scaled = d.checked_mul(Decimal::from(PRICE_SCALE))?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    i64::try_from(scaled).ok()
}

/// Converts price units back to a decimal amount of currency.
pub fn units_to_decimal(units: i64) -> Decimal {
    Decimal::new(units, 4).normalize()
}

fn parse_units(what: &str, symbol: &str, s: &str) -> Result<i64, ConfigError> {
    let d = Decimal::from_str(s)
        .map_err(|e| ConfigError::Invalid(format!("{symbol}: {what} {s:?}: {e}")))?;
    decimal_to_units(d).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "{symbol}: {what} {s:?} is out of range or finer than 0.0001"
        ))
    })
}

fn parse_percent_bps(what: &str, symbol: &str, s: &str) -> Result<u32, ConfigError> {
    let d = Decimal::from_str(s)
        .map_err(|e| ConfigError::Invalid(format!("{symbol}: {what} {s:?}: {e}")))?;
    let bps = d * Decimal::from(100);
    if bps.fract() != Decimal::ZERO || bps < Decimal::ZERO || bps > Decimal::from(10_000) {
        return Err(ConfigError::Invalid(format!(
            "{symbol}: {what} {s:?} must be between 0 and 100 in steps of 0.01"
        )));
    }
    u32::try_from(bps).map_err(|_| ConfigError::Invalid(format!("{symbol}: {what} {s:?}")))
}

impl EngineConfig {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> Result<EngineConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        let limits = Limits {
            max_open_orders_per_account: raw.limits.max_open_orders_per_account,
            max_resting_orders: raw.limits.max_resting_orders,
            max_accounts: raw.limits.max_accounts,
            expected_orders_per_day: raw.limits.expected_orders_per_day,
            stp: raw.limits.self_trade_prevention,
        };
        if limits.max_resting_orders == 0
            || limits.max_resting_orders > crate::types::OrderId::MAX_SLOTS
        {
            return Err(ConfigError::Invalid(format!(
                "limits.max_resting_orders must be between 1 and {}",
                crate::types::OrderId::MAX_SLOTS
            )));
        }
        if raw.instruments.len() > usize::from(u16::MAX) {
            return Err(ConfigError::Invalid("too many instruments".into()));
        }
        let d = &raw.defaults;
        let mut instruments = Vec::with_capacity(raw.instruments.len());
        for (i, r) in raw.instruments.iter().enumerate() {
            let symbol = r
                .symbol
                .clone()
                .ok_or_else(|| ConfigError::Invalid(format!("instrument #{i} has no symbol")))?;
            if symbol.is_empty() || symbol.len() > 16 || !symbol.is_ascii() {
                return Err(ConfigError::Invalid(format!(
                    "symbol {symbol:?} must be 1 to 16 ASCII characters"
                )));
            }
            if instruments.iter().any(|x: &Instrument| x.symbol == symbol) {
                return Err(ConfigError::Invalid(format!(
                    "symbol {symbol} is listed twice"
                )));
            }
            let need = |name: &str, v: Option<&str>| {
                v.map(str::to_owned)
                    .ok_or_else(|| ConfigError::Invalid(format!("{symbol}: {name} is missing")))
            };
            let tick_s = need(
                "tick_size",
                r.tick_size.as_deref().or(d.tick_size.as_deref()),
            )?;
            let ref_s = need(
                "reference_price",
                r.reference_price
                    .as_deref()
                    .or(d.reference_price.as_deref()),
            )?;
            let band_s = need(
                "band_percent",
                r.band_percent.as_deref().or(d.band_percent.as_deref()),
            )?;
            let collar_s = need(
                "collar_percent",
                r.collar_percent.as_deref().or(d.collar_percent.as_deref()),
            )?;
            let notional_s = need(
                "max_notional",
                r.max_notional.as_deref().or(d.max_notional.as_deref()),
            )?;
            let tick = parse_units("tick_size", &symbol, &tick_s)?;
            let reference_price = parse_units("reference_price", &symbol, &ref_s)?;
            let band_bps = parse_percent_bps("band_percent", &symbol, &band_s)?;
            let collar_bps = parse_percent_bps("collar_percent", &symbol, &collar_s)?;
            let max_notional = parse_units("max_notional", &symbol, &notional_s)?;
            let lot = r.lot_size.or(d.lot_size).unwrap_or(1);
            let daily_limit = r.daily_limit.or(d.daily_limit).unwrap_or(u64::MAX);
            let max_order_qty = r.max_order_qty.or(d.max_order_qty).unwrap_or(u64::MAX);
            if tick <= 0 || reference_price <= 0 || lot == 0 || max_notional <= 0 {
                return Err(ConfigError::Invalid(format!(
                    "{symbol}: tick size, reference price, lot size and max notional must be positive"
                )));
            }
            if reference_price % tick != 0 {
                return Err(ConfigError::Invalid(format!(
                    "{symbol}: reference price {ref_s} is not on the tick {tick_s}"
                )));
            }
            let band = i64::from(band_bps) * reference_price / 10_000;
            let min_price = (reference_price - band).max(tick);
            let min_price = (min_price + tick - 1) / tick * tick;
            let max_price = (reference_price + band) / tick * tick;
            let ticks = (max_price - min_price) / tick + 1;
            if ticks > 4_000_000 {
                return Err(ConfigError::Invalid(format!(
                    "{symbol}: the price band spans {ticks} ticks; at most 4,000,000 are allowed"
                )));
            }
            instruments.push(Instrument {
                id: SymbolId(i as u16),
                symbol,
                tick,
                lot,
                reference_price,
                min_price,
                max_price,
                collar_bps,
                daily_limit,
                max_order_qty,
                max_notional,
            });
        }
        let mut account_limits = Vec::with_capacity(raw.account_limits.len());
        for a in &raw.account_limits {
            let Some(inst) = instruments.iter().find(|x| x.symbol == a.symbol) else {
                return Err(ConfigError::Invalid(format!(
                    "account limit names unknown symbol {}",
                    a.symbol
                )));
            };
            if a.account >= limits.max_accounts {
                return Err(ConfigError::Invalid(format!(
                    "account limit names account {} beyond max_accounts",
                    a.account
                )));
            }
            account_limits.push(AccountLimit {
                account: AccountId(a.account),
                symbol: inst.id,
                daily_limit: a.daily_limit,
            });
        }
        Ok(EngineConfig {
            instruments,
            limits,
            account_limits,
        })
    }

    /// The embedded default configuration.
    pub fn default_universe() -> EngineConfig {
        Self::from_toml(DEFAULT_CONFIG_TOML).expect("the embedded configuration is valid")
    }

    /// Looks an instrument up by symbol.
    pub fn symbol(&self, symbol: &str) -> Option<&Instrument> {
        self.instruments.iter().find(|i| i.symbol == symbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_universe_has_100_symbols_with_bands() {
        let cfg = EngineConfig::default_universe();
        assert_eq!(cfg.instruments.len(), 100);
        let aapl = cfg.symbol("AAPL").unwrap();
        assert_eq!(aapl.reference_price, 1_900_000);
        assert_eq!(aapl.tick, 100);
        assert_eq!(aapl.min_price, 1_710_000);
        assert_eq!(aapl.max_price, 2_090_000);
        assert_eq!(aapl.daily_limit, 1_000_000);
        assert_eq!(aapl.collar_bps, 500);
        assert_eq!(cfg.limits.stp, StpMode::CancelResting);
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let base = "[limits]\nmax_open_orders_per_account=1\nmax_resting_orders=10\nmax_accounts=2\nself_trade_prevention=\"cancel-both\"\n[defaults]\ntick_size=\"0.01\"\nband_percent=\"10\"\ncollar_percent=\"5\"\nmax_notional=\"1000\"\n";
        let ok = format!("{base}[[instruments]]\nsymbol=\"X\"\nreference_price=\"10.00\"\n");
        assert!(EngineConfig::from_toml(&ok).is_ok());
        for bad in [
            format!("{base}[[instruments]]\nsymbol=\"X\"\nreference_price=\"10.005\"\n"),
            format!("{base}[[instruments]]\nsymbol=\"X\"\nreference_price=\"-1\"\n"),
            format!("{base}[[instruments]]\nsymbol=\"X\"\n"),
            format!(
                "{base}[[instruments]]\nsymbol=\"X\"\nreference_price=\"1\"\n[[instruments]]\nsymbol=\"X\"\nreference_price=\"1\"\n"
            ),
            format!(
                "{base}[[instruments]]\nsymbol=\"X\"\nreference_price=\"1\"\n[[account_limits]]\naccount=0\nsymbol=\"Y\"\ndaily_limit=1\n"
            ),
            format!("{base}[[instruments]]\nsymbol=\"X\"\nreference_price=\"1\"\nbogus=1\n"),
        ] {
            let err = EngineConfig::from_toml(&bad).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn decimal_units_conversion_is_exact() {
        assert_eq!(
            decimal_to_units(Decimal::from_str("100.10").unwrap()),
            Some(1_001_000)
        );
        assert_eq!(
            decimal_to_units(Decimal::from_str("0.00001").unwrap()),
            None
        );
        assert_eq!(units_to_decimal(1_001_000).to_string(), "100.1");
    }
}
