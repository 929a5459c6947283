//! How the server's log lines look: tracing-subscriber's own formats, with
//! the request a line was written for put in front of its spans. The
//! request comes from `wharf_server::request_context` (a task-local), read
//! only when a line is written, so a request that logs nothing pays
//! nothing for it.
//!
//! - text: `<time> <LEVEL> request{id=… method=GET path=/v2/…}:<spans>: <target>: <message>`,
//!   as tracing-subscriber's full format writes a span named `request`;
//! - JSON: the line's object gains `"request":{"id":…,"method":…,"path":…}`.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use wharf_server::request_context::{RequestScope, with_current};

/// Text lines (tracing-subscriber's full format).
pub struct Text;

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ansi = w.has_ansi_escapes();
        // Lines of libraries that log through the `log` crate carry their
        // own level and target in fields: as tracing-subscriber reads them.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if ansi {
            w.write_str("\x1b[2m")?;
        }
        SystemTime.format_time(&mut w)?;
        if ansi {
            w.write_str("\x1b[0m")?;
        }
        match (ansi, level_colour(meta.level())) {
            (true, colour) => write!(w, " \x1b[{colour}m{:>5}\x1b[0m ", meta.level())?,
            (false, _) => write!(w, " {:>5} ", meta.level())?,
        }
        let request = with_current(|r| write!(w, "request{{{}}}:", Fields(r))).transpose()?;
        let mut spans = request.is_some();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                w.write_str(span.name())?;
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(w, "{{{fields}}}")?;
                }
                w.write_char(':')?;
                spans = true;
            }
        }
        if spans {
            w.write_char(' ')?;
        }
        write!(w, "{}: ", meta.target())?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// The ANSI colour of a level, as tracing-subscriber colours it.
fn level_colour(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "35",
        Level::DEBUG => "34",
        Level::INFO => "32",
        Level::WARN => "33",
        Level::ERROR => "31",
    }
}

/// A request's fields as the text format writes a span's.
struct Fields<'a>(&'a RequestScope);

impl fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "id={} method={} path={}", r.id(), r.method, r.uri.path())
    }
}

/// JSON lines: tracing-subscriber's JSON format (with the current span),
/// plus the request.
pub struct JsonLines(pub Format<Json>);

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(request) = with_current(request_json) else {
            return self.0.format_event(ctx, w, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        w.write_str(&with_request(&line, &request))
    }
}

/// The request as the value of a JSON line's `request`.
fn request_json(r: &RequestScope) -> String {
    serde_json::json!({
        "id": r.id(),
        "method": r.method.as_str(),
        "path": r.uri.path(),
    })
    .to_string()
}

/// `line` (one JSON object) with `"request": request` first in it.
fn with_request(line: &str, request: &str) -> String {
    match line.strip_prefix('{') {
        Some(rest) if rest.trim_start().starts_with('}') => {
            format!("{{\"request\":{request}{rest}")
        }
        Some(rest) => format!("{{\"request\":{request},{rest}"),
        // Not an object: left as it is.
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// Log lines written into memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn request() -> RequestScope {
        RequestScope {
            id: "req-1".parse().unwrap(),
            method: "GET".parse().unwrap(),
            uri: "/v2/a/manifests/latest?x=y".parse().unwrap(),
        }
    }

    /// Log through `subscriber` inside a request and outside any.
    async fn log_both(subscriber: impl Subscriber + Send + Sync + 'static) {
        let _default = tracing::subscriber::set_default(subscriber);
        wharf_server::request_context::scope(Some(request()), async {
            let span = tracing::info_span!("task", id = 7);
            let _in = span.enter();
            tracing::warn!(n = 3, "inside");
        })
        .await;
        tracing::info!("outside");
    }

    #[tokio::test]
    async fn text_lines_name_the_request_before_the_spans() {
        let out = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(out.clone())
            .event_format(Text)
            .finish();
        log_both(subscriber).await;
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let inside = lines[0].split_once(' ').unwrap().1;
        assert_eq!(
            inside,
            " WARN request{id=req-1 method=GET path=/v2/a/manifests/latest}:task{id=7}: \
             wharf::cli::log_lines::tests: inside n=3"
        );
        let outside = lines[1].split_once(' ').unwrap().1;
        assert_eq!(outside, " INFO wharf::cli::log_lines::tests: outside");
        assert!(
            lines[1].starts_with("20") && lines[1].contains('T'),
            "{text}"
        );
    }

    #[test]
    fn lines_through_the_log_crate_keep_their_target_and_level() {
        let out = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(out.clone())
            .event_format(Text)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let record = log::Record::builder()
                .level(log::Level::Warn)
                .target("rustls::conn")
                .args(format_args!("bad record"))
                .build();
            tracing_log::format_trace(&record).unwrap();
        });
        let text = out.text();
        let line = text.split_once(' ').unwrap().1;
        assert_eq!(line, " WARN rustls::conn: bad record\n", "{text}");
    }

    #[tokio::test]
    async fn json_lines_carry_the_request_as_an_object() {
        let out = Lines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(out.clone())
            .json()
            .with_current_span(true)
            .event_format(JsonLines(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(true),
            ))
            .finish();
        log_both(subscriber).await;
        let text = out.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[0]["request"],
            serde_json::json!({"id": "req-1", "method": "GET", "path": "/v2/a/manifests/latest"})
        );
        assert_eq!(lines[0]["span"]["id"], 7);
        assert_eq!(lines[0]["fields"]["message"], "inside");
        assert!(lines[1].get("request").is_none(), "{text}");
        assert_eq!(lines[1]["fields"]["message"], "outside");
    }

    #[test]
    fn the_request_goes_first_in_any_object() {
        assert_eq!(
            with_request("{\"a\":1}\n", "{}"),
            "{\"request\":{},\"a\":1}\n"
        );
        assert_eq!(with_request("{}\n", "{}"), "{\"request\":{}}\n");
        assert_eq!(with_request("nope\n", "{}"), "nope\n");
    }
}
