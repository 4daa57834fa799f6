//! Where `tracing` events go: stderr, every line passed through secret redaction, text or JSON. For
//! `pdp serve` the lines are buffered: each event is appended to memory and a writer thread writes what
//! has gathered 100 ms after the first line of a batch, so a busy server makes one write per
//! batch instead of one system call per access-log line (nginx's `access_log … buffer=`). What is
//! buffered is written at exit.
//!
//! The text format is tracing-subscriber's default (`<time> <LEVEL> <target>: <fields>`, strings quoted,
//! control characters in messages escaped) written by a formatter of pdp's own: the default one paints
//! every field name and value through its ANSI layer even with colour off, and formats the timestamp anew
//! for every line, which cost as much as a forwarded request's proxying (`cargo xtask bench serve-dp1`).
//!
//! Deliberately not here: what is logged (the libraries' events), the printer's own lines.

#![allow(clippy::print_stderr)]

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How long a line may wait for others to join its batch: at most ten writes and wake-ups a second
/// however busy the server is (nginx's `flush=` does the same with a second).
const WINDOW: Duration = Duration::from_millis(100);
/// A batch this large is written by the thread that logs, at once.
const LIMIT: usize = 1 << 20;

/// Tracing to stderr (`filter` overrides `default`), redacted, buffered when `buffered`.
pub fn init(filter: Option<String>, default: &str, color: bool, json: bool, buffered: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let buffer = buffered.then(Buffer::start);
    let make = move || Redacting { buffer: buffer.clone() };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(make);
    if json {
        builder.json().flatten_event(true).with_current_span(false).init();
    } else {
        builder.with_ansi(color).event_format(Line { color }).init();
    }
}

/// tracing-subscriber's default text line, written directly.
struct Line {
    color: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        write_timestamp(&mut w)?;
        let meta = event.metadata();
        let (level, paint) = match *meta.level() {
            Level::ERROR => ("ERROR", "\x1b[31m"),
            Level::WARN => (" WARN", "\x1b[33m"),
            Level::INFO => (" INFO", "\x1b[32m"),
            Level::DEBUG => ("DEBUG", "\x1b[34m"),
            Level::TRACE => ("TRACE", "\x1b[35m"),
        };
        if self.color {
            write!(w, " {paint}{level}\x1b[0m {}: ", meta.target())?;
        } else {
            write!(w, " {level} {}: ", meta.target())?;
        }
        let mut fields = Fields { w: &mut w, first: true, result: Ok(()) };
        event.record(&mut fields);
        fields.result?;
        writeln!(w)
    }
}

/// `2026-12-02T13:50:38.066466Z`: the part up to the seconds is made once a second (per thread).
fn write_timestamp(w: &mut Writer<'_>) -> std::fmt::Result {
    let mut text = String::with_capacity(28);
    write_timestamp_into(&mut text)?;
    w.write_str(&text)
}

fn write_timestamp_into(w: &mut String) -> std::fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            cached.1.clear();
            let _ = write!(
                cached.1,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            cached.0 = secs;
        }
        w.push_str(&cached.1);
        w.push('.');
        let micros = now.subsec_micros();
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(micros);
        for _ in digits.len()..6 {
            w.push('0');
        }
        w.push_str(digits);
        w.push('Z');
        Ok(())
    })
}

/// The default visitor's output: fields in order, space-separated, `name=value` with strings quoted and
/// the message bare (its control characters escaped, so a child's output cannot drive the terminal).
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl Fields<'_, '_> {
    fn sep(&mut self) {
        if self.first {
            self.first = false;
        } else if self.result.is_ok() {
            self.result = self.w.write_char(' ');
        }
    }

    fn message(&mut self, text: &str) {
        if text.bytes().all(|b| b >= 0x20 || b == b'\t') {
            self.result = self.w.write_str(text);
        } else {
            for c in text.chars() {
                if self.result.is_err() {
                    return;
                }
                self.result = if c.is_control() && c != '\t' {
                    write!(self.w, "{}", c.escape_default())
                } else {
                    self.w.write_char(c)
                };
            }
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.sep();
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            self.message(value);
        } else if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f) {
            // What `{:?}` would write, without escaping char by char.
            self.result = write!(self.w, "{}=\"{value}\"", field.name());
        } else {
            self.result = write!(self.w, "{}={value:?}", field.name());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.sep();
        if self.result.is_ok() {
            self.result = write!(self.w, "{}={value}", field.name());
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.sep();
        if self.result.is_ok() {
            self.result = write!(self.w, "{}={value}", field.name());
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.sep();
        if self.result.is_ok() {
            self.result = write!(self.w, "{}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.sep();
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            let mut text = String::new();
            let _ = write!(text, "{value:?}");
            self.message(&text);
        } else {
            self.result = write!(self.w, "{}={value:?}", field.name());
        }
    }
}

/// The access log of `pdp serve`: each record formatted straight into the log (the same line a
/// `pdp::access` event would give, in text or JSON), skipping tracing's field machinery on the request
/// path. Off when the log filter leaves `pdp::access` out (`PDP_LOG=warn`). The text line is put together
/// from pieces (integers by `itoa`, the milliseconds from whole tenths), no `format!` machinery per line.
pub struct AccessWriter {
    json: bool,
    color: bool,
    /// Whether the filter lets `pdp::access` through: asked once (the filter does not change while
    /// serving).
    enabled: OnceLock<bool>,
}

impl AccessWriter {
    /// For the log format `pdp serve` runs with.
    pub fn new(json: bool, color: bool) -> AccessWriter {
        AccessWriter { json, color, enabled: OnceLock::new() }
    }
}

/// `elapsed` in milliseconds with one decimal, as `{:.1}` writes it (rounded half up in whole tenths).
fn push_ms(line: &mut String, elapsed: Duration) {
    let tenths = (elapsed.as_micros() + 50) / 100;
    let mut digits = itoa::Buffer::new();
    line.push_str(digits.format(tenths / 10));
    line.push('.');
    line.push(char::from(b'0' + (tenths % 10) as u8));
}

impl pdp_serve::access::AccessLog for AccessWriter {
    fn record(&self, r: &pdp_serve::access::AccessRecord<'_>) {
        if !*self.enabled.get_or_init(|| tracing::event_enabled!(target: "pdp::access", Level::INFO)) {
            return;
        }
        thread_local! {
            static LINE: RefCell<String> = const { RefCell::new(String::new()) };
        }
        LINE.with(|cell| {
            let mut line = cell.borrow_mut();
            line.clear();
            let path = pdp_config::redact(r.path);
            let key = r.key.unwrap_or("-");
            let mut status = itoa::Buffer::new();
            let status = status.format(r.status);
            if self.json {
                let quoted = serde_json::to_string(&*path).unwrap_or_else(|_| "\"\"".into());
                line.push_str("{\"timestamp\":\"");
                let _ = write_timestamp_into(&mut line);
                for piece in ["\",\"level\":\"INFO\",\"id\":\"", r.id, "\",\"method\":\"", r.method, "\",\"path\":"] {
                    line.push_str(piece);
                }
                for piece in [quoted.as_str(), ",\"route\":\"", r.route, "\",\"status\":", status, ",\"ms\":\""] {
                    line.push_str(piece);
                }
                push_ms(&mut line, r.elapsed);
                for piece in ["\",\"key\":\"", key, "\""] {
                    line.push_str(piece);
                }
                // Only requests that carried a cache strategy say what the cache did.
                if let Some(cache) = r.cache {
                    for piece in [",\"cache\":\"", cache, "\""] {
                        line.push_str(piece);
                    }
                }
                line.push_str(",\"target\":\"pdp::access\"}\n");
            } else {
                let _ = write_timestamp_into(&mut line);
                // As `Line` writes the level: right-aligned in five, painted when colour is on.
                line.push_str(if self.color { " \x1b[32m INFO\x1b[0m" } else { "  INFO" });
                for piece in [" pdp::access: id=", r.id, " method=", r.method, " path=", &path, " route=\"", r.route] {
                    line.push_str(piece);
                }
                for piece in ["\" status=", status, " ms="] {
                    line.push_str(piece);
                }
                push_ms(&mut line, r.elapsed);
                for piece in [" key=\"", key, "\""] {
                    line.push_str(piece);
                }
                if let Some(cache) = r.cache {
                    line.push_str(" cache=");
                    line.push_str(cache);
                }
                line.push('\n');
            }
            match BUFFER.get() {
                Some(buffer) => buffer.append(line.as_bytes()),
                None => {
                    let _ = std::io::stderr().write_all(line.as_bytes());
                }
            }
        });
    }
}

/// Writes out whatever is buffered (call before exiting).
pub fn flush() {
    if let Some(buffer) = BUFFER.get() {
        buffer.write_out();
    }
}

static BUFFER: OnceLock<Arc<Buffer>> = OnceLock::new();

struct Buffer {
    lines: Mutex<Vec<u8>>,
    first: Condvar,
}

impl Buffer {
    fn start() -> Arc<Buffer> {
        let buffer = BUFFER
            .get_or_init(|| {
                Arc::new(Buffer { lines: Mutex::new(Vec::with_capacity(64 * 1024)), first: Condvar::new() })
            })
            .clone();
        let writer = buffer.clone();
        std::thread::Builder::new()
            .name("pdp-log".into())
            .spawn(move || {
                // Batches are swapped with this one, so neither side grows a buffer from empty each time.
                let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
                loop {
                    {
                        let mut lines = writer.lines.lock().unwrap_or_else(PoisonError::into_inner);
                        while lines.is_empty() {
                            lines = writer.first.wait(lines).unwrap_or_else(PoisonError::into_inner);
                        }
                    }
                    std::thread::sleep(WINDOW);
                    std::mem::swap(&mut *writer.lines.lock().unwrap_or_else(PoisonError::into_inner), &mut spare);
                    let _ = std::io::stderr().write_all(&spare);
                    spare.clear();
                }
            })
            .ok();
        buffer
    }

    fn append(&self, bytes: &[u8]) {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let was_empty = lines.is_empty();
        lines.extend_from_slice(bytes);
        if lines.len() >= LIMIT {
            let batch = std::mem::take(&mut *lines);
            drop(lines);
            let _ = std::io::stderr().write_all(&batch);
        } else if was_empty {
            self.first.notify_one();
        }
    }

    fn write_out(&self) {
        let batch = std::mem::take(&mut *self.lines.lock().unwrap_or_else(PoisonError::into_inner));
        if !batch.is_empty() {
            let _ = std::io::stderr().write_all(&batch);
        }
    }
}

/// Masks credentials in whatever passes through (one log event arrives as one write), then writes it to
/// stderr or the buffer.
struct Redacting {
    buffer: Option<Arc<Buffer>>,
}

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes UTF-8; the lossy decoding is only a fallback.
        let text = std::str::from_utf8(buf).map_or_else(|_| String::from_utf8_lossy(buf), std::borrow::Cow::Borrowed);
        let redacted = pdp_config::redact(&text);
        match &self.buffer {
            Some(buffer) => buffer.append(redacted.as_bytes()),
            None => std::io::stderr().write_all(redacted.as_bytes())?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
