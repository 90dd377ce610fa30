//! Log line formats. JSON: one flat object per event, with the current request id and the fields
//! of any enclosing spans merged in:
//! `{"timestamp":…,"level":…,"target":…,"message":…,<event fields>,"request_id":…,<span fields>}`.
//! Text: tracing's readable format, prefixed with the request id.
//!
//! tracing-subscriber's own JSON formatter stores span fields as a JSON string and parses it back
//! on every event, which cost about a third of a `/health` request's time. Here span fields are
//! rendered once, as a ready-made JSON fragment, and pasted into each line.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Renders fields as `"name":value` pairs separated by commas (a JSON object's inside).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = JsonVisitor::new(&mut writer, false);
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let leading_comma = !current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut visitor = JsonVisitor::new(&mut writer, leading_comma);
        fields.record(&mut visitor);
        visitor.result
    }
}

/// The event formatter for `IBEX_API_LOG_FORMAT=json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        writer.write_str(&timestamp(std::time::SystemTime::now()))?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_str("\",\"target\":")?;
        write_json_str(&mut writer, meta.target())?;
        let mut visitor = JsonVisitor::new(&mut writer, true);
        event.record(&mut visitor);
        visitor.result?;
        if let Some(id) = crate::request_id::current() {
            let mut buf = uuid::Uuid::encode_buffer();
            writer.write_str(",\"request_id\":\"")?;
            writer.write_str(id.uuid().hyphenated().encode_lower(&mut buf))?;
            writer.write_char('"')?;
        }
        if let Some(trace_id) = crate::observability::traces::current_trace_id() {
            write!(writer, ",\"trace_id\":\"{trace_id}\"")?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() {
                    if !fields.is_empty() {
                        writer.write_char(',')?;
                        writer.write_str(fields)?;
                    }
                }
            }
        }
        writer.write_str("}\n")
    }
}

struct JsonVisitor<'a, W: Write> {
    writer: &'a mut W,
    comma: bool,
    result: fmt::Result,
}

impl<'a, W: Write> JsonVisitor<'a, W> {
    fn new(writer: &'a mut W, leading_comma: bool) -> Self {
        Self {
            writer,
            comma: leading_comma,
            result: Ok(()),
        }
    }

    fn key(&mut self, field: &Field) -> fmt::Result {
        if self.comma {
            self.writer.write_char(',')?;
        }
        self.comma = true;
        write_json_str(self.writer, field.name())?;
        self.writer.write_char(':')
    }

    fn raw(&mut self, field: &Field, value: impl fmt::Display) {
        if self.result.is_ok() {
            self.result = self
                .key(field)
                .and_then(|()| write!(self.writer, "{value}"));
        }
    }
}

impl<W: Write> Visit for JsonVisitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = self
                .key(field)
                .and_then(|()| write_json_str(self.writer, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| {
                self.writer.write_char('"')?;
                write!(Escaper(self.writer), "{value:?}")?;
                self.writer.write_char('"')
            });
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.raw(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.raw(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.raw(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.raw(field, value);
        } else {
            self.raw(field, "null");
        }
    }
}

/// RFC 3339 UTC with microseconds (`2026-11-28T10:00:32.098680Z`), as tracing-subscriber writes
/// it, but without the formatting machinery: the date part is computed once per second per thread.
fn timestamp(now: std::time::SystemTime) -> String {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since_epoch = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, micros) = (since_epoch.as_secs(), since_epoch.subsec_micros());
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, date_time(secs));
        }
        let mut out = String::with_capacity(27);
        out.push_str(&cached.1);
        out.push('.');
        push_digits(&mut out, micros, 6);
        out.push('Z');
        out
    })
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the Unix epoch (civil-from-days, proleptic Gregorian).
fn date_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u32;
    let mut out = String::with_capacity(19);
    push_digits(&mut out, year, 4);
    out.push('-');
    push_digits(&mut out, month, 2);
    out.push('-');
    push_digits(&mut out, day, 2);
    out.push('T');
    push_digits(&mut out, rem / 3_600, 2);
    out.push(':');
    push_digits(&mut out, rem / 60 % 60, 2);
    out.push(':');
    push_digits(&mut out, rem % 60, 2);
    out
}

/// Appends `value` zero-padded to `width` digits.
fn push_digits(out: &mut String, value: u32, width: u32) {
    for position in (0..width).rev() {
        let digit = value / 10u32.pow(position) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

fn write_json_str<W: Write + ?Sized>(writer: &mut W, value: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaper(writer).write_str(value)?;
    writer.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaper<'a, W: Write + ?Sized>(&'a mut W);

impl<W: Write + ?Sized> Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Nearly every value (ids, routes, methods) needs no escaping: one check, one copy.
        if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            return self.0.write_str(s);
        }
        let mut start = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

/// The event formatter for `IBEX_API_LOG_FORMAT=text`: the default format, plus the request id.
#[derive(Debug, Default)]
pub struct TextLines(tracing_subscriber::fmt::format::Format);

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if let Some(id) = crate::request_id::current() {
            write!(writer, "[{id}] ")?;
        }
        if let Some(trace_id) = crate::observability::traces::current_trace_id() {
            write!(writer, "[trace {trace_id}] ")?;
        }
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_rfc_3339() {
        use std::time::{Duration, UNIX_EPOCH};
        for (secs, expected) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (1_795_000_000, "2026-11-18T11:06:40"),
            (4_102_444_799, "2099-12-31T23:59:59"),
        ] {
            assert_eq!(date_time(secs), expected);
        }
        let at = UNIX_EPOCH + Duration::from_micros(1_795_000_000_000_042);
        assert_eq!(timestamp(at), "2026-11-18T11:06:40.000042Z");
        assert_eq!(
            timestamp(at + Duration::from_secs(1)),
            "2026-11-18T11:06:41.000042Z"
        );
    }

    #[test]
    fn escapes_everything_json_requires() {
        let mut out = String::new();
        write_json_str(&mut out, "a\"b\\c\nd\u{1}é").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
        let parsed: String = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed, "a\"b\\c\nd\u{1}é");
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn renders_one_json_object_per_event_with_span_fields() {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .with_writer(move || SinkWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "abc");
            let _entered = span.enter();
            tracing::info!(target: "access", status = 200u64, latency_ms = 1.5, ok = true, route = "/x\"y", "served {}", 1);
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect(&text);
        assert_eq!(line["target"], "access");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "served 1");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["ok"], true);
        assert_eq!(line["route"], "/x\"y");
        assert_eq!(line["request_id"], "abc");
        assert!(line["timestamp"].as_str().unwrap().starts_with("20"));
    }

    struct SinkWriter(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SinkWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
