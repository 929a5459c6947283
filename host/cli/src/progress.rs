//! Progress of long work: an indicatif bar on a terminal; plain, rate-limited
//! lines otherwise (logs and CI have no use for carriage returns). Always on
//! stderr: stdout is for results.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wharf_store::db::TaskState;

/// Plain lines come at most this often, unless the message changes.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// What the numbers count, which decides how they show.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Measure {
    /// Bytes out of a known total.
    Bytes,
    /// Bytes, total unknown (a stream being read).
    BytesSoFar,
    /// Items out of a known total.
    Items,
    /// Nothing to count yet: a spinner and the message.
    Nothing,
}

#[derive(Clone, PartialEq, Eq, Debug)]
struct State {
    measure: Measure,
    done: u64,
    total: u64,
    message: String,
}

/// A handle on one line of progress; clones share it (an upload's body
/// reader advances the same bar the uploader finishes).
#[derive(Clone)]
pub struct Progress(Arc<Shared>);

struct Shared {
    label: String,
    view: View,
}

enum View {
    Bar {
        bar: ProgressBar,
        measure: Mutex<Option<Measure>>,
    },
    Lines(Mutex<Lines>),
}

struct Lines {
    state: State,
    printed: Option<(State, Instant)>,
}

/// Whether progress draws as a bar: only for a person watching a terminal.
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

impl Progress {
    fn new(label: &str, state: State) -> Self {
        let view = if interactive() {
            // Style, prefix and figures before the first frame: a bar that
            // draws first and styles after shows indicatif's default look
            // for a moment.
            let bar =
                ProgressBar::with_draw_target(Some(state.total), ProgressDrawTarget::hidden())
                    .with_style(style(state.measure))
                    .with_prefix(label.to_string())
                    .with_position(state.done)
                    .with_message(state.message.clone());
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(120));
            View::Bar {
                bar,
                measure: Mutex::new(Some(state.measure)),
            }
        } else {
            View::Lines(Mutex::new(Lines {
                state,
                printed: None,
            }))
        };
        // A bar draws from the start (on its tick); a line waits until
        // there is news.
        Progress(Arc::new(Shared {
            label: label.to_string(),
            view,
        }))
    }

    /// Bytes of a known total (an upload), or of a stream when `total` is
    /// `None`.
    pub fn bytes(label: &str, total: Option<u64>) -> Self {
        let (measure, total) = match total {
            Some(t) => (Measure::Bytes, t),
            None => (Measure::BytesSoFar, 0),
        };
        Self::new(
            label,
            State {
                measure,
                done: 0,
                total,
                message: String::new(),
            },
        )
    }

    /// A task, whose progress decides later what there is to count.
    pub fn task(label: &str) -> Self {
        Self::new(
            label,
            State {
                measure: Measure::Nothing,
                done: 0,
                total: 0,
                message: String::new(),
            },
        )
    }

    /// Bytes done so far (for [`Progress::bytes`]).
    pub fn set_position(&self, done: u64) {
        let mut s = self.current();
        s.done = done;
        self.show(s);
    }

    /// A task's reported progress: bytes when it counts bytes (with items
    /// in the message), else items, else its message alone.
    pub fn show_task(&self, state: TaskState, p: &wharf_store::db::Progress) {
        let mut message = p.message.clone();
        let (measure, done, total) = if p.bytes_total > 0 {
            if p.items_total > 0 {
                let items = format!("{}/{} items", p.items_done, p.items_total);
                message = if message.is_empty() {
                    items
                } else {
                    format!("{items}, {message}")
                };
            }
            (Measure::Bytes, p.bytes_done, p.bytes_total)
        } else if p.items_total > 0 {
            (Measure::Items, p.items_done, p.items_total)
        } else {
            (Measure::Nothing, 0, 0)
        };
        if state == TaskState::Waiting {
            message = "waiting for earlier tasks on the repository or a free worker".into();
        } else if message.is_empty() && measure == Measure::Nothing {
            message = "running".into();
        }
        self.show(State {
            measure,
            done,
            total,
            message,
        });
    }

    /// A line of its own, above the bar.
    pub fn note(&self, line: &str) {
        match &self.0.view {
            View::Bar { bar, .. } => bar.println(line),
            View::Lines(_) => eprintln!("{line}"),
        }
    }

    /// Done: leave the final figures and say `line`.
    pub fn finish(&self, line: &str) {
        match &self.0.view {
            View::Bar { bar, .. } => {
                if let Some(len) = bar.length()
                    && len > 0
                {
                    bar.set_position(len);
                }
                bar.finish();
            }
            View::Lines(lines) => {
                let mut l = lines.lock().unwrap();
                if l.state.measure == Measure::Bytes || l.state.measure == Measure::Items {
                    l.state.done = l.state.total;
                }
                self.print_line(&mut l, true);
            }
        }
        eprintln!("{line}");
    }

    /// Stopped short: leave the figures as they are.
    pub fn abandon(&self) {
        match &self.0.view {
            View::Bar { bar, .. } => bar.abandon(),
            View::Lines(lines) => {
                let mut l = lines.lock().unwrap();
                // Figures never reported are no news now either.
                if l.printed.is_some() {
                    self.print_line(&mut l, true);
                }
            }
        }
    }

    fn current(&self) -> State {
        match &self.0.view {
            View::Bar { bar, measure } => State {
                measure: measure.lock().unwrap().unwrap_or(Measure::Nothing),
                done: bar.position(),
                total: bar.length().unwrap_or(0),
                message: bar.message(),
            },
            View::Lines(l) => l.lock().unwrap().state.clone(),
        }
    }

    fn show(&self, state: State) {
        match &self.0.view {
            View::Bar { bar, measure } => {
                // Figures first: a new style draws at once, with them.
                bar.set_length(state.total);
                bar.set_position(state.done);
                let mut m = measure.lock().unwrap();
                if *m != Some(state.measure) {
                    bar.set_style(style(state.measure));
                    bar.set_prefix(self.0.label.clone());
                    *m = Some(state.measure);
                }
                if bar.message() != state.message {
                    bar.set_message(state.message);
                }
            }
            View::Lines(lines) => {
                let mut l = lines.lock().unwrap();
                l.state = state;
                self.print_line(&mut l, false);
            }
        }
    }

    /// Print the state as a line when it says something new: a new message
    /// at once, new figures every [`LINE_EVERY`].
    fn print_line(&self, l: &mut Lines, force: bool) {
        let due = match &l.printed {
            None => true,
            Some((prev, _)) if prev == &l.state => false,
            Some((prev, _)) if force => prev != &l.state,
            Some((prev, at)) => {
                prev.message != l.state.message
                    || prev.measure != l.state.measure
                    || at.elapsed() >= LINE_EVERY
            }
        };
        if !due {
            return;
        }
        let s = &l.state;
        let figures = match s.measure {
            Measure::Bytes => format!(
                "{} of {} ({}%)",
                indicatif::HumanBytes(s.done),
                indicatif::HumanBytes(s.total),
                percent(s.done, s.total)
            ),
            Measure::BytesSoFar => indicatif::HumanBytes(s.done).to_string(),
            Measure::Items => format!(
                "{} of {} items ({}%)",
                s.done,
                s.total,
                percent(s.done, s.total)
            ),
            Measure::Nothing => String::new(),
        };
        let text = [figures.as_str(), s.message.as_str()]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        if text.is_empty() {
            return;
        }
        eprintln!("{}: {text}", self.0.label);
        l.printed = Some((l.state.clone(), Instant::now()));
    }
}

fn percent(done: u64, total: u64) -> u64 {
    done.saturating_mul(100).checked_div(total).unwrap_or(0)
}

/// The bar's look per measure; `[=====>    ]` as pulp-admin draws it.
fn style(measure: Measure) -> ProgressStyle {
    let template = match measure {
        Measure::Bytes => {
            "{prefix} [{bar:40}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta}) {wide_msg}"
        }
        Measure::BytesSoFar => "{prefix} {spinner} {bytes} ({binary_bytes_per_sec}) {wide_msg}",
        Measure::Items => "{prefix} [{bar:40}] {pos}/{len} items {wide_msg}",
        Measure::Nothing => "{prefix} {spinner} {wide_msg} ({elapsed})",
    };
    ProgressStyle::with_template(template)
        .expect("templates are valid")
        .progress_chars("=> ")
}
