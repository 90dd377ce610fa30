//! One setting, declared once: its variable, default, bounds and meaning (its doc comment, in
//! [`settings!`](crate::config)). The concern that owns it reads it through [`Values`], which
//! applies the bounds and names the variable in every error; the documentation table and
//! `.env.example` are generated from the same declarations.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// The longest duration a `_MS` setting may have unless it says otherwise: far beyond any
/// sensible timeout, and it keeps arithmetic on deadlines safe.
const ONE_DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone, Copy)]
pub enum Bounds {
    /// Free text, checked by the concern's own reader.
    Text,
    /// A whole number within `min..=max`.
    Number { min: u64, max: u64 },
    /// Milliseconds within `min..=max`.
    Millis { min: u64, max: u64 },
}

#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub default: &'static str,
    pub bounds: Bounds,
    /// The lines of the doc comment it was declared with ([`settings!`](crate::config)).
    pub meaning_lines: &'static [&'static str],
}

type Meaning = &'static [&'static str];

impl Setting {
    const fn bounded(
        name: &'static str,
        default: &'static str,
        bounds: Bounds,
        meaning: Meaning,
    ) -> Self {
        Self {
            name,
            default,
            bounds,
            meaning_lines: meaning,
        }
    }

    pub const fn text(name: &'static str, default: &'static str, meaning: Meaning) -> Self {
        Self::bounded(name, default, Bounds::Text, meaning)
    }

    pub const fn number(
        name: &'static str,
        default: &'static str,
        min: u64,
        max: u64,
        meaning: Meaning,
    ) -> Self {
        Self::bounded(name, default, Bounds::Number { min, max }, meaning)
    }

    /// Milliseconds, at least `min`, at most a day unless [`Setting::up_to`] says more.
    pub const fn millis(
        name: &'static str,
        default: &'static str,
        min: u64,
        meaning: Meaning,
    ) -> Self {
        let max = ONE_DAY_MS;
        Self::bounded(name, default, Bounds::Millis { min, max }, meaning)
    }

    /// A millisecond setting whose ceiling is `max` instead of a day.
    pub const fn up_to(self, max: u64) -> Self {
        match self.bounds {
            Bounds::Millis { min, .. } => Self {
                bounds: Bounds::Millis { min, max },
                ..self
            },
            _ => panic!("only a millisecond setting takes up_to"),
        }
    }

    /// What the setting means, as one line of text.
    pub fn meaning(&self) -> String {
        let lines: Vec<&str> = self.meaning_lines.iter().map(|l| l.trim()).collect();
        lines.join(" ")
    }

    /// The bounds as the documentation states them (empty for text).
    pub fn bounds_text(&self) -> String {
        match self.bounds {
            Bounds::Text => String::new(),
            Bounds::Number { min, max } => format!("{min} to {max}"),
            Bounds::Millis { min, max } => format!("{min} to {max} ms"),
        }
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            var: self.name.to_owned(),
            message: message.into(),
        }
    }
}

/// The raw values given (environment and file), with each setting's default behind them.
pub struct Values(pub(super) HashMap<String, String>);

impl Values {
    /// The value given, or `None` (unlike [`Values::get`], no default).
    pub fn given(&self, setting: &Setting) -> Option<&str> {
        self.0.get(setting.name).map(|v| v.trim())
    }

    pub fn get(&self, setting: &Setting) -> &str {
        self.given(setting).unwrap_or(setting.default)
    }

    pub fn parse<T: FromStr>(&self, setting: &Setting, expected: &str) -> Result<T, ConfigError> {
        self.get(setting)
            .parse()
            .map_err(|_| setting.error(format!("expected {expected}")))
    }

    pub fn number(&self, setting: &Setting) -> Result<u64, ConfigError> {
        let (Bounds::Number { min, max } | Bounds::Millis { min, max }) = setting.bounds else {
            panic!("{} is not a number", setting.name);
        };
        let expected = format!("an integer from {min} to {max}");
        let value: u64 = self.parse(setting, &expected)?;
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(setting.error(expected))
        }
    }

    pub fn millis(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        assert!(
            matches!(setting.bounds, Bounds::Millis { .. }),
            "{} is not in milliseconds",
            setting.name
        );
        self.number(setting).map(Duration::from_millis)
    }

    /// The comma-separated items of a list, trimmed, empty ones left out.
    pub fn list(&self, setting: &Setting) -> impl Iterator<Item = &str> {
        self.get(setting)
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
    }

    /// A number of days, as a duration.
    pub fn days(&self, setting: &Setting) -> Result<Duration, ConfigError> {
        self.number(setting)
            .map(|days| Duration::from_secs(days * 86_400))
    }

    /// A number that is 1 for on, 0 for off.
    pub fn switch(&self, setting: &Setting) -> Result<bool, ConfigError> {
        self.number(setting).map(|n| n == 1)
    }

    pub fn flag(&self, setting: &Setting) -> Result<bool, ConfigError> {
        match self.get(setting) {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(setting.error("expected `true` or `false`")),
        }
    }

    /// An http:// or https:// URL with a host; a trailing slash is dropped.
    pub fn http_url(&self, setting: &Setting) -> Result<String, ConfigError> {
        let url = self.get(setting).trim_end_matches('/');
        let uri: http::Uri = url
            .parse()
            .map_err(|_| setting.error("expected a URL such as http://memory:8020"))?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) if uri.query().is_none() => Ok(url.to_owned()),
            _ => Err(setting.error("expected an http:// or https:// URL with a host")),
        }
    }

    /// [`Values::http_url`], or `None` when the value is empty (the feature is off).
    pub fn optional_http_url(&self, setting: &Setting) -> Result<Option<String>, ConfigError> {
        match self.get(setting) {
            "" => Ok(None),
            _ => self.http_url(setting).map(Some),
        }
    }
}

/// How a concern's field is read from its setting, by the field's type.
pub trait FromSetting: Sized {
    fn from_setting(values: &Values, setting: &Setting) -> Result<Self, ConfigError>;
}

impl FromSetting for Duration {
    fn from_setting(values: &Values, setting: &Setting) -> Result<Self, ConfigError> {
        values.millis(setting)
    }
}

impl FromSetting for String {
    fn from_setting(values: &Values, setting: &Setting) -> Result<Self, ConfigError> {
        Ok(values.get(setting).to_owned())
    }
}

impl FromSetting for super::Secret {
    fn from_setting(values: &Values, setting: &Setting) -> Result<Self, ConfigError> {
        Ok(Self::new(values.get(setting)))
    }
}

/// Whole numbers: the setting's bounds keep the value within the field's type.
macro_rules! from_number {
    ($($int:ty),+) => {
        $(impl FromSetting for $int {
            fn from_setting(values: &Values, setting: &Setting) -> Result<Self, ConfigError> {
                <$int>::try_from(values.number(setting)?)
                    .map_err(|_| setting.error("out of range"))
            }
        })+
    };
}
from_number!(u16, u32, u64, usize);
