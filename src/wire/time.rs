//! Timestamps as the platform writes them: RFC 3339, UTC, milliseconds (`2026-11-28T22:29:24.814Z`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

use crate::error::ApiError;

/// An optional RFC 3339 parameter (a filter's bound); a bad one is a 400 naming `field`.
pub fn parse_param(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::field(field, "INVALID_TIMESTAMP", "must be an RFC 3339 timestamp")
                })
        })
        .transpose()
}

/// A half-open range `[after, before)` must not be empty: a 400 naming `after_field` otherwise.
pub fn check_range(
    after_field: &str,
    before_field: &str,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    match (after, before) {
        (Some(after), Some(before)) if after >= before => Err(ApiError::field(
            after_field,
            "INVALID_RANGE",
            format!("must be before {before_field}"),
        )),
        _ => Ok(()),
    }
}

pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn rfc3339_opt<S: Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, serializer),
        None => serializer.serialize_none(),
    }
}
