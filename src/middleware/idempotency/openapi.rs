//! The idempotency layer's own part of the OpenAPI document: the `Idempotency-Key` header on
//! every authenticated POST (with the configured window), its 409 answers, and
//! `Idempotent-Replayed` on the successes.

use std::time::Duration;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::{Object, ObjectBuilder, Ref, RefOr, Required, Type};

/// The shared 409 answer's component name (its text is in `openapi.rs`'s table).
pub const CONFLICT_RESPONSE: &str = "IdempotencyConflict";

/// `86400000 ms` as "24 hours", `90000 ms` as "90 seconds".
fn human(window: Duration) -> String {
    let secs = window.as_secs();
    let (n, unit) = if secs >= 3600 && secs % 3600 == 0 {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs % 60 == 0 {
        (secs / 60, "minute")
    } else {
        (secs.max(1), "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// `Idempotency-Key` on a POST, its answers, and the replay marker on its successes; `window`
/// is how long answers are kept, as configured.
pub fn document(operation: &mut Operation, window: Duration) {
    let key = ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            format!("Makes a retry safe: the first answer (status, body, Location/ETag) is kept for {} for this organization and caller, and a retry with the same key, method, path and body gets it again with `Idempotent-Replayed: true`, doing nothing else. 1 to 255 visible ASCII characters, e.g. a UUID.", human(window)),
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[!-~]+$")),
        ))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(key.into());
    {
        let (status, name) = ("409", CONFLICT_RESPONSE);
        {
            match operation.responses.responses.get_mut(status) {
                Some(RefOr::T(own)) => own.description.push_str(
                    " Or, with an Idempotency-Key: IDEMPOTENCY_KEY_IN_USE (still running; Retry-After), IDEMPOTENCY_KEY_REUSED (another request's key) or IDEMPOTENCY_REPLAY_WITHHELD.",
                ),
                Some(RefOr::Ref(_)) => {}
                None => {
                    operation
                        .responses
                        .responses
                        .insert(status.to_owned(), Ref::from_response_name(name).into());
                }
            }
        }
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        if let (true, RefOr::T(response)) = (status.starts_with('2'), response) {
            response.headers.insert(
                "Idempotent-Replayed".to_owned(),
                HeaderBuilder::new()
                    .schema(Some(Object::with_type(Type::String)))
                    .description(Some(
                        "`true` on an answer replayed for a repeated Idempotency-Key.",
                    ))
                    .build()
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_window_reads_as_people_say_it() {
        use std::time::Duration;
        assert_eq!(super::human(Duration::from_millis(86_400_000)), "24 hours");
        assert_eq!(super::human(Duration::from_secs(3600)), "1 hour");
        assert_eq!(super::human(Duration::from_secs(90)), "90 seconds");
        assert_eq!(super::human(Duration::from_secs(600)), "10 minutes");
    }
}
