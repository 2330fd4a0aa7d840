//! Reports: `index.json` and a self-contained `index.html` under `target/conformance/`, the
//! summary table by section, and the checked-in expected results.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{CaseResult, Mode, Verdict};

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn close_json(code: Option<Option<u16>>) -> String {
    match code {
        None => "null".into(),
        Some(None) => "\"empty\"".into(),
        Some(Some(c)) => c.to_string(),
    }
}

/// The section of a case id: "6.4.1" -> "6".
fn section(id: &str) -> &str {
    id.split('.').next().unwrap_or(id)
}

/// Numeric order of case ids (so 1.10 comes after 1.9).
fn id_key(id: &str) -> Vec<u32> {
    id.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Counts per section and verdict.
fn by_section(results: &[CaseResult]) -> BTreeMap<u32, BTreeMap<Verdict, usize>> {
    let mut table: BTreeMap<u32, BTreeMap<Verdict, usize>> = BTreeMap::new();
    for r in results {
        *table
            .entry(section(&r.id).parse().unwrap_or(0))
            .or_default()
            .entry(r.verdict)
            .or_default() += 1;
    }
    table
}

const VERDICTS: [Verdict; 5] = [
    Verdict::Ok,
    Verdict::NonStrict,
    Verdict::Informational,
    Verdict::Unimplemented,
    Verdict::Failed,
];

/// The summary by section, as a Markdown table.
pub(crate) fn summary_markdown(mode: Mode, results: &[CaseResult], elapsed: Duration) -> String {
    let mut out = format!(
        "Conformance, {} mode: {} cases in {:.1} s\n\n| section | cases | OK | NON-STRICT | INFORMATIONAL | UNIMPLEMENTED | FAILED |\n|---|---|---|---|---|---|---|\n",
        mode.name(),
        results.len(),
        elapsed.as_secs_f64()
    );
    for (section, counts) in by_section(results) {
        let total: usize = counts.values().sum();
        let cells: Vec<String> =
            VERDICTS.iter().map(|v| counts.get(v).copied().unwrap_or(0).to_string()).collect();
        out.push_str(&format!("| {section} | {total} | {} |\n", cells.join(" | ")));
    }
    out
}

/// Writes `index.json` and `index.html` into `dir`.
pub(crate) fn write(
    dir: &Path,
    mode: Mode,
    results: &[CaseResult],
    elapsed: Duration,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut json = format!(
        "{{\n  \"mode\": \"{}\",\n  \"seconds\": {:.3},\n  \"cases\": [\n",
        mode.name(),
        elapsed.as_secs_f64()
    );
    for (i, r) in results.iter().enumerate() {
        json.push_str(&format!(
            "    {{\"id\": {}, \"description\": {}, \"verdict\": \"{}\", \"reason\": {}, \"expected\": {}, \"observed\": {}, \
             \"close\": {{\"peer_code\": {}, \"suite_code\": {}, \"tcp_closed_by\": \"{}\"}}, \"duration_ms\": {:.3}}}{}\n",
            json_string(&r.id),
            json_string(&r.description),
            r.verdict.as_str(),
            json_string(&r.reason),
            json_string(&r.expected),
            json_string(&r.observed),
            close_json(r.peer_close),
            r.suite_close.map_or("null".into(), |c| c.to_string()),
            r.closed_by,
            r.duration.as_secs_f64() * 1000.0,
            if i + 1 == results.len() { "" } else { "," }
        ));
    }
    json.push_str("  ]\n}\n");
    std::fs::write(dir.join("index.json"), json)?;

    let mut page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Conformance ({mode})</title><style>\
         body{{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}}.OK{{background:#c8ecc8}}\
         .NON-STRICT{{background:#f6e7b0}}.INFORMATIONAL{{background:#d6e4f7}}.FAILED,.UNIMPLEMENTED{{background:#f4c2c2}}\
         details{{margin:.1rem 0}}summary{{cursor:pointer}}pre{{background:#f6f6f6;padding:.5rem;overflow:auto;max-height:20rem}}\
         </style></head><body><h1>Conformance, {mode} mode</h1><p>{} cases in {:.1} s</p><table><tr><th>section</th><th>cases</th>",
        results.len(),
        elapsed.as_secs_f64(),
        mode = mode.name()
    );
    for v in VERDICTS {
        page.push_str(&format!("<th class=\"{0}\">{0}</th>", v.as_str()));
    }
    page.push_str("</tr>");
    for (section, counts) in by_section(results) {
        let total: usize = counts.values().sum();
        page.push_str(&format!(
            "<tr><td><a href=\"#s{section}\">{section}</a></td><td>{total}</td>"
        ));
        for v in VERDICTS {
            page.push_str(&format!("<td>{}</td>", counts.get(&v).copied().unwrap_or(0)));
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
    let mut sorted: Vec<&CaseResult> = results.iter().collect();
    sorted.sort_by_key(|r| id_key(&r.id));
    let mut current = "";
    for r in sorted {
        if section(&r.id) != current {
            current = section(&r.id);
            page.push_str(&format!("<h2 id=\"s{current}\">Section {current}</h2>"));
        }
        page.push_str(&format!(
            "<details><summary><span class=\"{v}\">{v}</span> <b>{id}</b> {desc}</summary><table>\
             <tr><th>expected</th><td>{exp}</td></tr><tr><th>observed</th><td>{obs}</td></tr>\
             <tr><th>reason</th><td>{reason}</td></tr><tr><th>close</th><td>peer sent {pc}, suite sent {sc}, TCP closed by {by}</td></tr>\
             <tr><th>time</th><td>{ms:.1} ms</td></tr></table><pre>{log}</pre></details>",
            v = r.verdict.as_str(),
            id = html(&r.id),
            desc = html(&r.description),
            exp = html(&r.expected),
            obs = html(&r.observed),
            reason = html(&r.reason),
            pc = html(&close_json(r.peer_close)),
            sc = r.suite_close.map_or("none".into(), |c| c.to_string()),
            by = r.closed_by,
            ms = r.duration.as_secs_f64() * 1000.0,
            log = html(&r.wire_log),
        ));
    }
    page.push_str("</body></html>\n");
    std::fs::write(dir.join("index.html"), page)?;
    Ok(())
}

/// Writes the expected-results file: one `id VERDICT` line per case.
pub(crate) fn write_expected(path: &Path, results: &[CaseResult]) -> Result<()> {
    let mut sorted: Vec<&CaseResult> = results.iter().collect();
    sorted.sort_by_key(|r| id_key(&r.id));
    let mut out = String::from(
        "# Expected verdicts; `cargo xtask conformance --bless` rewrites this file.\n",
    );
    for r in sorted {
        out.push_str(&format!("{} {}\n", r.id, r.verdict.as_str()));
    }
    std::fs::create_dir_all(path.parent().context("expected file has a parent")?)?;
    std::fs::write(path, out)?;
    Ok(())
}
