//! How results print: tables and `Label: value` details for people, JSON for
//! scripts (`--output json`). Results go to stdout; progress and notes go to
//! stderr, so `wharf ... --output json | jq` always gets clean JSON.

use serde::Serialize;
use std::io::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Write to stdout; a closed pipe (`| head`) is the reader's choice, not an
/// error worth a panic.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub fn print_json(value: &impl Serialize) {
    let mut text = serde_json::to_string_pretty(value).expect("records serialize");
    text.push('\n');
    emit(&text);
}

/// A borderless table with upper-case headers, like `kubectl get`.
pub fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(headers.iter().map(|h| h.to_uppercase()));
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    let mut text = table.trim_fmt();
    text.push('\n');
    emit(&text);
}

/// Aligned `Label:  value` lines, as `pulp-admin ... list --details` prints;
/// a value of several lines continues under the first.
pub fn print_details(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    let mut text = String::new();
    for (label, value) in pairs {
        let mut lines = value.lines();
        let first = lines.next().unwrap_or("");
        text.push_str(&format!("{:width$}{first}\n", format!("{label}:")));
        for line in lines {
            text.push_str(&format!("{:width$}{line}\n", ""));
        }
    }
    emit(&text);
}

/// A line of human output on stdout (a result, not progress).
pub fn say(line: impl AsRef<str>) {
    emit(&format!("{}\n", line.as_ref()));
}

pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// `k=v, k2=v2`.
pub fn notes(notes: &wharf_store::db::Notes) -> String {
    notes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One-line JSON, cut to `max` characters for a table cell.
pub fn compact_json(v: &serde_json::Value, max: usize) -> String {
    let s = v.to_string();
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

/// A timestamp without its milliseconds: a table needs the second at most.
pub fn time(rfc3339: &str) -> String {
    match rfc3339.split_once('.') {
        Some((secs, rest)) if rest.ends_with('Z') => format!("{secs}Z"),
        _ => rfc3339.to_string(),
    }
}
