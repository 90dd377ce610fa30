//! The analytics parameters (validated before anything is asked of ClickHouse), the UTC bucket
//! arithmetic, and the answers' shapes.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::wire::names::named;

/// Longest range of any query, and of an hourly one.
pub const MAX_RANGE: Duration = Duration::days(90);
pub const MAX_HOURLY_RANGE: Duration = Duration::days(7);

named! {
    pub enum Granularity {
        Hour = "hour",
        Day = "day",
        /// Weeks start on Monday, 00:00 UTC.
        Week = "week",
    }
}

impl Granularity {
    /// `day` when not given.
    fn from_param(text: Option<&str>) -> Result<Self, ApiError> {
        let Some(text) = text else {
            return Ok(Self::Day);
        };
        Self::parse(text).ok_or_else(|| {
            let names = Self::NAMES.join(", ");
            ApiError::field(
                "granularity",
                "INVALID_VALUE",
                format!("must be one of {names}"),
            )
        })
    }

    /// The start of the bucket holding `t` (UTC; weeks from Monday).
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let secs = t.timestamp();
        let floored = match self {
            Self::Hour => secs.div_euclid(3600) * 3600,
            Self::Day => secs.div_euclid(86_400) * 86_400,
            Self::Week => {
                // 1970-01-01 was a Thursday: day n is a Monday when (n + 3) % 7 == 0.
                let day = secs.div_euclid(86_400);
                (day - (day + 3).rem_euclid(7)) * 86_400
            }
        };
        Utc.timestamp_opt(floored, 0).single().expect("in range")
    }

    pub fn step(self) -> Duration {
        match self {
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
            Self::Week => Duration::weeks(1),
        }
    }

    /// The same floor in ClickHouse, on `requested_at`, as plain arithmetic on the Unix time:
    /// independent of the server's time zone, and the same on ClickHouse 18.16 and today's.
    pub fn bucket_sql(self) -> &'static str {
        match self {
            Self::Hour => "intDiv(toUInt32(requested_at), 3600) * 3600",
            Self::Day => "intDiv(toUInt32(requested_at), 86400) * 86400",
            Self::Week => {
                "(intDiv(toUInt32(requested_at), 86400) - ((intDiv(toUInt32(requested_at), 86400) + 3) % 7)) * 86400"
            }
        }
    }

    /// Every bucket start from the one holding `start` to the last one before `end`.
    pub fn buckets(self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut at = self.floor(start);
        let mut all = Vec::new();
        while at < end {
            all.push(at);
            at += self.step();
        }
        all
    }

    /// Seconds an answer is cached (docs/domains/analytics.md).
    pub fn cache_ttl_secs(self) -> u64 {
        match self {
            Self::Hour | Self::Day => 60,
            Self::Week => 300,
        }
    }
}

/// The query parameters as text, whichever operation they came from: parsing them by hand
/// (rather than by serde) lets every bad value be a 400 naming its field.
#[derive(Debug, Default)]
pub struct RawParams<'a> {
    pub start: Option<&'a str>,
    pub end: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub granularity: Option<&'a str>,
    pub percentile: Option<&'a str>,
    pub error_code: Option<&'a str>,
}

/// The range and agent every analytics query takes; each operation adds its own parameters
/// ([`GranularityParam`], [`PercentileParam`], [`ErrorCodeParam`]). The handlers extract exactly
/// these types and the document is derived from them, so the documented parameters are the ones
/// read.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// Start of the range (inclusive), RFC 3339.
    #[param(required = true, value_type = DateTime<Utc>)]
    pub start: Option<String>,
    /// End of the range (exclusive), RFC 3339; after `start`, at most 90 days later (7 for
    /// hourly buckets).
    #[param(required = true, value_type = DateTime<Utc>)]
    pub end: Option<String>,
    /// Only this agent's requests.
    #[param(value_type = Option<Uuid>)]
    pub agent_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GranularityParam {
    /// Bucket size (default `day`).
    #[param(value_type = Option<Granularity>)]
    pub granularity: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PercentileParam {
    /// The percentile of every bucket (default 95).
    #[param(value_type = Option<Percentile>)]
    pub percentile: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorCodeParam {
    /// Only errors with this code.
    #[param(min_length = 1, max_length = 100, pattern = "^[^\\u0000]+$")]
    pub error_code: Option<String>,
}

impl RangeParams {
    pub fn raw(&self) -> RawParams<'_> {
        RawParams {
            start: self.start.as_deref(),
            end: self.end.as_deref(),
            agent_id: self.agent_id.as_deref(),
            ..RawParams::default()
        }
    }
}

/// The latency percentiles the service computes: 50, 95 or 99 (an integer enum in the document).
#[derive(Debug)]
pub struct Percentile;

impl utoipa::PartialSchema for Percentile {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        serde_json::from_value(serde_json::json!({
            "type": "integer",
            "enum": [50, 95, 99],
        }))
        .expect("a valid schema literal")
    }
}

impl ToSchema for Percentile {}

/// Validated parameters.
#[derive(Debug, Clone)]
pub struct Query {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub agent_id: Option<Uuid>,
    pub granularity: Granularity,
    pub percentile: u32,
    pub error_code: Option<String>,
}

fn instant(field: &str, value: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let text = value.ok_or_else(|| ApiError::field(field, "REQUIRED", "is required"))?;
    let t = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::field(field, "INVALID_TIMESTAMP", "must be an RFC 3339 timestamp")
        })?;
    // ClickHouse's DateTime holds 1970-01-01 to 2105: outside it nothing can match, and the
    // bound values must stay representable.
    if !(0..=4_102_444_800).contains(&t.timestamp()) {
        return Err(ApiError::field(
            field,
            "OUT_OF_RANGE",
            "must lie between 1970 and 2100",
        ));
    }
    Ok(t)
}

impl Query {
    pub fn parse(params: RawParams<'_>) -> Result<Self, ApiError> {
        let start = instant("start", params.start)?;
        let end = instant("end", params.end)?;
        if start >= end {
            return Err(ApiError::field(
                "start",
                "INVALID_RANGE",
                "must be before end",
            ));
        }
        let granularity = Granularity::from_param(params.granularity)?;
        let limit = if granularity == Granularity::Hour {
            MAX_HOURLY_RANGE
        } else {
            MAX_RANGE
        };
        if end - start > limit {
            return Err(ApiError::field(
                "end",
                "RANGE_TOO_LONG",
                format!(
                    "must be at most {} days after start for {} buckets",
                    limit.num_days(),
                    granularity.as_str()
                ),
            ));
        }
        let agent_id = params
            .agent_id
            .map(|text| {
                text.parse::<Uuid>()
                    .map_err(|_| ApiError::field("agent_id", "INVALID_UUID", "must be a UUID"))
            })
            .transpose()?;
        let percentile = match params.percentile {
            None => 95,
            Some("50") => 50,
            Some("95") => 95,
            Some("99") => 99,
            Some(_) => {
                return Err(ApiError::field(
                    "percentile",
                    "INVALID_VALUE",
                    "must be one of 50, 95, 99",
                ));
            }
        };
        let error_code = match params.error_code {
            None => None,
            Some(code) if (1..=100).contains(&code.chars().count()) && !code.contains('\0') => {
                Some(code.to_owned())
            }
            Some(_) => {
                return Err(ApiError::field(
                    "error_code",
                    "INVALID_LENGTH",
                    "must be 1 to 100 characters, without NUL",
                ));
            }
        };
        Ok(Self {
            start,
            end,
            agent_id,
            granularity,
            percentile,
            error_code,
        })
    }

    /// The parameters an answer depends on, in one canonical form (the cache key's input).
    pub fn normalized(&self, endpoint: &str) -> String {
        format!(
            "{endpoint}|{}|{}|{}|{}|{}|{}",
            self.start.timestamp_micros(),
            self.end.timestamp_micros(),
            self.agent_id.map(|a| a.to_string()).unwrap_or_default(),
            self.granularity.as_str(),
            self.percentile,
            self.error_code.as_deref().unwrap_or_default(),
        )
    }
}

/// Requests and tokens per bucket: every bucket of the range, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageSeries {
    pub granularity: Granularity,
    #[serde(with = "rfc3339_secs")]
    pub start: DateTime<Utc>,
    #[serde(with = "rfc3339_secs")]
    pub end: DateTime<Utc>,
    pub buckets: Vec<UsageBucket>,
}

/// Latency percentiles per bucket: every bucket of the range, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LatencySeries {
    pub granularity: Granularity,
    #[serde(with = "rfc3339_secs")]
    pub start: DateTime<Utc>,
    #[serde(with = "rfc3339_secs")]
    pub end: DateTime<Utc>,
    /// The percentile of every bucket.
    #[schema(value_type = Percentile)]
    pub percentile: u32,
    pub buckets: Vec<LatencyBucket>,
}

/// Errors per bucket: every bucket of the range, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorSeries {
    pub granularity: Granularity,
    #[serde(with = "rfc3339_secs")]
    pub start: DateTime<Utc>,
    #[serde(with = "rfc3339_secs")]
    pub end: DateTime<Utc>,
    pub buckets: Vec<ErrorBucket>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageBucket {
    #[serde(with = "rfc3339_secs")]
    pub start: DateTime<Utc>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LatencyBucket {
    #[serde(with = "rfc3339_secs")]
    pub start: DateTime<Utc>,
    pub requests: u64,
    /// The percentile of the proxy's own overhead, ms; null without requests.
    pub proxy_overhead_ms: Option<f64>,
    /// The percentile of time to first byte, ms; null without requests.
    pub ttfb_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorCount {
    pub error_code: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBucket {
    #[serde(with = "rfc3339_secs")]
    pub start: DateTime<Utc>,
    /// Requests with an error in the bucket.
    pub errors: u64,
    /// Per error code, most frequent first.
    pub codes: Vec<ErrorCount>,
}

/// One model and provider's usage over the range (read straight from the trace store).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, clickhouse::Row)]
pub struct ModelUsage {
    pub model: String,
    pub provider: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
}

/// Usage per model and provider over the range, most total tokens first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelBreakdown {
    #[serde(with = "rfc3339_secs")]
    pub start: DateTime<Utc>,
    #[serde(with = "rfc3339_secs")]
    pub end: DateTime<Utc>,
    pub models: Vec<ModelUsage>,
}

/// Bucket times as the platform writes them (RFC 3339, UTC, milliseconds).
mod rfc3339_secs {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn buckets_are_utc_and_weeks_start_on_monday() {
        let g = Granularity::Week;
        // 2026-12-03 is a Thursday; its week began on Monday 2026-11-30.
        assert_eq!(
            g.floor(at("2026-12-03T15:00:00Z")),
            at("2026-11-30T00:00:00Z")
        );
        assert_eq!(
            g.floor(at("2026-11-30T00:00:00Z")),
            at("2026-11-30T00:00:00Z")
        );
        assert_eq!(
            g.floor(at("2026-11-29T23:59:59Z")),
            at("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            Granularity::Day.floor(at("2026-12-03T23:59:59Z")),
            at("2026-12-03T00:00:00Z")
        );
        let hours =
            Granularity::Hour.buckets(at("2026-12-01T10:30:00Z"), at("2026-12-01T13:00:00Z"));
        assert_eq!(hours.len(), 3, "10:00 (from 10:30), 11:00, 12:00");
        assert_eq!(hours[0], at("2026-12-01T10:00:00Z"));
    }

    #[test]
    fn parameters_are_checked_and_named() {
        let field = |p: RawParams| match Query::parse(p) {
            Err(ApiError::Validation { field_errors, .. }) => field_errors[0].field.clone(),
            other => panic!("{other:?}"),
        };
        let p = |start: &'static str, end: &'static str, g: Option<&'static str>| RawParams {
            start: Some(start),
            end: Some(end),
            granularity: g,
            ..Default::default()
        };
        assert_eq!(field(RawParams::default()), "start");
        assert_eq!(
            field(p("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", None)),
            "start"
        );
        assert_eq!(
            field(p("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", None)),
            "start"
        );
        assert_eq!(
            field(p("2026-01-01T00:00:00Z", "2026-04-02T00:00:00Z", None)),
            "end"
        );
        assert_eq!(
            field(p(
                "2026-01-01T00:00:00Z",
                "2026-01-09T00:00:00Z",
                Some("hour")
            )),
            "end"
        );
        assert_eq!(
            field(p(
                "2026-01-01T00:00:00Z",
                "2026-01-02T00:00:00Z",
                Some("minute")
            )),
            "granularity"
        );
        assert_eq!(field(p("yesterday", "2026-01-02T00:00:00Z", None)), "start");
        assert!(Query::parse(p("2026-01-01T00:00:00Z", "2026-03-31T00:00:00Z", None)).is_ok());
    }
}
