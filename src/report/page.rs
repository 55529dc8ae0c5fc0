//! The two pages of a report: `report.md` (figures linked relative to it, for a repository page)
//! and `index.html` (one self-contained file: every image inlined as a data URI, a stylesheet in
//! the page, no scripts, nothing fetched; every string from the runs escaped).

use std::fmt::Write as _;

use anyhow::{Context, Result};

use super::inputs::Inputs;
use super::Report;
use crate::track::atomic;

pub fn write(inputs: &Inputs, report: &Report) -> Result<()> {
    let name = inputs
        .dir
        .file_name()
        .map_or("experiment".into(), |n| n.to_string_lossy().into_owned());
    let summary = std::fs::read_to_string(inputs.dir.join("summary.md")).unwrap_or_default();
    let finished = inputs.runs.len();
    let intro = format!(
        "{finished} finished runs: {} variants on {} datasets. Reference variant: {}.",
        inputs.variants.len(),
        inputs.datasets.len(),
        inputs.reference.as_deref().unwrap_or("none")
    );

    let mut md = format!("# Report: {name}\n\n{intro}\n\n");
    for f in &report.figures {
        let svg = report.dir.join(format!("{}.svg", f.stem));
        let _ = writeln!(md, "## {}\n\n![{}]({}.png)\n", f.caption, f.caption, f.stem);
        if svg.exists() {
            let _ = writeln!(md, "[SVG]({}.svg)\n", f.stem);
        }
    }
    for s in &report.skipped {
        let _ = writeln!(md, "- {s}");
    }
    if !summary.is_empty() {
        let _ = write!(md, "\n## Tables\n\n{summary}");
    }
    atomic::write(&report.dir.join("report.md"), md.as_bytes())?;

    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n<p>{}</p>\n",
        escape(&format!("OpenCarbon report: {name}")),
        escape(&format!("Report: {name}")),
        escape(&intro)
    );
    html.push_str("<nav><ul>\n");
    for (i, f) in report.figures.iter().enumerate() {
        let _ = writeln!(
            html,
            "<li><a href=\"#fig{i}\">{}</a></li>",
            escape(&f.caption)
        );
    }
    html.push_str("<li><a href=\"#tables\">Tables</a></li></ul></nav>\n");
    for (i, f) in report.figures.iter().enumerate() {
        let png = report.dir.join(format!("{}.png", f.stem));
        let bytes = std::fs::read(&png).with_context(|| format!("reading {}", png.display()))?;
        let _ = writeln!(
            html,
            "<figure id=\"fig{i}\"><img src=\"data:image/png;base64,{}\" alt=\"{}\">\
             <figcaption>{}</figcaption></figure>",
            base64(&bytes),
            escape(&f.caption),
            escape(&f.caption)
        );
    }
    if !report.skipped.is_empty() {
        html.push_str("<ul class=\"skipped\">\n");
        for s in &report.skipped {
            let _ = writeln!(html, "<li>{}</li>", escape(s));
        }
        html.push_str("</ul>\n");
    }
    html.push_str("<section id=\"tables\"><h2>Tables</h2>\n");
    html.push_str(&markdown_to_html(&summary));
    html.push_str("</section>\n</body></html>\n");
    atomic::write(&report.dir.join("index.html"), html.as_bytes())
}

const STYLE: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;max-width:1450px;margin:2em auto;padding:0 1em;color:#111}\
figure{margin:2em 0}img{max-width:100%;height:auto;border:1px solid #ddd}\
figcaption{font-size:.95em;color:#333;margin-top:.4em}\
table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}\
th{background:#f3f3f3}nav ul{columns:2;font-size:.9em}.skipped{color:#8a3b00}";

/// HTML-escapes text (element content and attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text with `**bold**` spans, escaped, the spans as <strong>.
fn inline(s: &str) -> String {
    escape(s)
        .split("**")
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<strong>{part}</strong>")
            } else {
                part.to_string()
            }
        })
        .collect()
}

/// The subset of Markdown the summary uses: headings, pipe tables, paragraphs.
pub fn markdown_to_html(md: &str) -> String {
    let mut html = String::new();
    let mut table: Vec<Vec<String>> = Vec::new();
    let flush = |table: &mut Vec<Vec<String>>, html: &mut String| {
        if table.is_empty() {
            return;
        }
        html.push_str("<table>\n");
        for (r, row) in table.iter().enumerate() {
            let tag = if r == 0 { "th" } else { "td" };
            html.push_str("<tr>");
            for cell in row {
                let _ = write!(html, "<{tag}>{}</{tag}>", inline(cell));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
        table.clear();
    };
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            let cells: Vec<String> = t
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            if !cells
                .iter()
                .all(|c| !c.is_empty() && c.chars().all(|ch| ch == '-' || ch == ':'))
            {
                table.push(cells);
            }
            continue;
        }
        flush(&mut table, &mut html);
        if let Some(h) = t.strip_prefix("### ") {
            let _ = writeln!(html, "<h4>{}</h4>", inline(h));
        } else if let Some(h) = t.strip_prefix("## ") {
            let _ = writeln!(html, "<h3>{}</h3>", inline(h));
        } else if let Some(h) = t.strip_prefix("# ") {
            let _ = writeln!(html, "<h3>{}</h3>", inline(h));
        } else if !t.is_empty() {
            let _ = writeln!(html, "<p>{}</p>", inline(t));
        }
    }
    flush(&mut table, &mut html);
    html
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn strings_are_escaped_and_tables_become_html() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let html = markdown_to_html("## T <x>\n\n| a | b |\n|---|---|\n| **1** | <2> |\n");
        assert!(html.contains("<h3>T &lt;x&gt;</h3>"), "{html}");
        assert!(html.contains("<tr><th>a</th><th>b</th></tr>"), "{html}");
        assert!(
            html.contains("<td><strong>1</strong></td><td>&lt;2&gt;</td>"),
            "{html}"
        );
        assert!(!html.contains("---"));
    }
}
