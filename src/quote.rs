//! Documents that agree with the tables: `opencarbon docs [--write]`.
//!
//! In `README.md` and `docs/*.md`, a quote block holds, verbatim, part of a committed results
//! file:
//!
//! ```text
//! <!-- quote: results/<exp>/<file>.md#<heading text> -->
//!
//! …generated…
//!
//! <!-- /quote -->
//! ```
//!
//! - `<path>.md#<heading>`: the lines under the (ATX) heading with that text, up to the next
//!   heading of the same or a higher level, trimmed of blank lines at both ends. Without
//!   `#<heading>`, the whole file (trimmed).
//! - `<path>.csv rows=<col>=<value>[,<col>=<value>…] cols=<a>,<b>,…`: the CSV rows whose every
//!   named column holds that value exactly (`<col>=<v1>|<v2>`: either), those columns in that
//!   order, as a Markdown table with the values as the file spells them. Both `rows=` and
//!   `cols=` are optional (all rows, all columns). On a `.md` source they select from its (or
//!   the heading's) first Markdown table the same way, or from its `table=<n>`th. A name or
//!   value holding a comma or `|` goes in double quotes: `rows=setting="zero-shot, all tiles"`.
//!
//! Paths are relative to the repository root and may not leave it. Blocks inside fenced code
//! are not read (so a document can show the syntax). [`check`] lists the blocks whose content
//! differs from what their source renders to; [`write`] regenerates them, each document
//! replaced atomically, and writes nothing when any block is in error (a missing source, a
//! heading or column not found, a row filter matching nothing, an unterminated block), each
//! error naming the document and line.

use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::track::atomic;

/// The command line of `opencarbon docs`.
#[derive(clap::Args)]
pub struct DocsArgs {
    /// Regenerate the stale quote blocks in place (default: only check them, exit non-zero on
    /// a stale one)
    #[arg(long)]
    write: bool,
    /// The repository root (holding README.md, docs/ and results/)
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

/// `opencarbon docs`: check (or, with `--write`, regenerate) every quote block.
pub fn main(args: DocsArgs) -> Result<()> {
    let docs = documents(&args.root)?;
    if docs.is_empty() {
        bail!(
            "{}: no README.md or docs/*.md here (run from the repository root or pass --root)",
            args.root.display()
        );
    }
    if args.write {
        let written = write(&args.root)?;
        for s in &written {
            println!("regenerated {s}");
        }
        println!(
            "docs: {} block(s) regenerated, every quote block current",
            written.len()
        );
        return Ok(());
    }
    let stale = check(&args.root)?;
    if stale.is_empty() {
        let blocks = count_blocks(&args.root)?;
        println!(
            "docs: {blocks} quote block(s) in {} document(s), all current",
            docs.len()
        );
        return Ok(());
    }
    let list: Vec<String> = stale.iter().map(|s| format!("  {s}")).collect();
    bail!(
        "{} stale quote block(s) (run `opencarbon docs --write`):\n{}",
        stale.len(),
        list.join("\n")
    )
}

/// What a quote block quotes, as written after `quote:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The file, relative to the repository root.
    pub path: String,
    /// `#<heading>`: the section under it.
    pub heading: Option<String>,
    /// `rows=`: each (column, accepted values) every selected row matches.
    pub rows: Vec<(String, Vec<String>)>,
    /// `cols=`: the columns shown, in this order (all when `None`).
    pub cols: Option<Vec<String>>,
    /// `table=`: which Markdown table of the section (1-based) rows and columns come from.
    pub table: Option<usize>,
}

/// The option keys, each starting an option where whitespace precedes it.
const KEYS: [&str; 3] = ["rows=", "cols=", "table="];

/// Splits `s` at `sep` outside double quotes, trimming each item and removing the quotes.
fn split_quoted(s: &str, sep: char) -> Result<Vec<String>> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            item.push(c);
        } else if c == sep && !quoted {
            items.push(std::mem::take(&mut item));
        } else {
            item.push(c);
        }
    }
    if quoted {
        bail!("unbalanced `\"` in `{s}`");
    }
    items.push(item);
    Ok(items.iter().map(|i| unquote(i)).collect())
}

/// `s` trimmed, without the double quotes around it.
fn unquote(s: &str) -> String {
    let t = s.trim();
    match t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if t.len() >= 2 => inner.to_string(),
        _ => t.to_string(),
    }
}

impl Source {
    /// Parses the text between `quote:` and `-->`.
    pub fn parse(spec: &str) -> Result<Self> {
        let spec = spec.trim();
        // The options start at the first whitespace-preceded `rows=`, `cols=` or `table=`
        // outside double quotes; before them is the path and heading (a heading may hold
        // spaces).
        let mut starts: Vec<(usize, &str)> = Vec::new();
        let mut quoted = false;
        let mut prev_space = false;
        for (at, c) in spec.char_indices() {
            if c == '"' {
                quoted = !quoted;
            }
            if !quoted && prev_space {
                if let Some(key) = KEYS.iter().find(|k| spec[at..].starts_with(**k)) {
                    starts.push((at, key));
                }
            }
            prev_space = c.is_whitespace();
        }
        let head_end = starts.first().map_or(spec.len(), |s| s.0);
        let head = spec[..head_end].trim();
        if head.is_empty() {
            bail!("no source file after `quote:`");
        }
        let (path, heading) = match head.split_once('#') {
            Some((p, h)) => {
                let h = h.trim();
                if h.is_empty() {
                    bail!("`{head}`: empty heading after `#`");
                }
                (p.trim().to_string(), Some(h.to_string()))
            }
            None => (head.to_string(), None),
        };
        if path.is_empty() || path.contains(char::is_whitespace) {
            bail!("`{head}`: expected a path (no spaces), optionally followed by #<heading>");
        }
        let mut source = Source {
            path,
            heading,
            rows: Vec::new(),
            cols: None,
            table: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for (k, &(at, key)) in starts.iter().enumerate() {
            let end = starts.get(k + 1).map_or(spec.len(), |s| s.0);
            let value = spec[at + key.len()..end].trim();
            if value.is_empty() {
                bail!("`{key}` without a value");
            }
            if seen.contains(&key) {
                bail!("`{key}` given twice");
            }
            seen.push(key);
            match key {
                "rows=" => {
                    for pair in split_quoted(value, ',')? {
                        let Some((col, vals)) = pair.split_once('=') else {
                            bail!("rows=: `{pair}` is not <column>=<value>");
                        };
                        let col = unquote(col);
                        if col.is_empty() {
                            bail!("rows=: `{pair}` has no column name");
                        }
                        source.rows.push((col, split_quoted(vals, '|')?));
                    }
                }
                "cols=" => {
                    let cols = split_quoted(value, ',')?;
                    if cols.iter().any(|c| c.is_empty()) {
                        bail!("cols=: an empty column name in `{value}`");
                    }
                    source.cols = Some(cols);
                }
                _ => match value.parse::<usize>() {
                    Ok(n) if n >= 1 => source.table = Some(n),
                    _ => bail!("table=: `{value}` is not a table number (1, 2, …)"),
                },
            }
        }
        let is_csv = source.path.ends_with(".csv");
        if !is_csv && !source.path.ends_with(".md") {
            bail!("{}: only .md and .csv files can be quoted", source.path);
        }
        if is_csv && (source.heading.is_some() || source.table.is_some()) {
            bail!(
                "{}: a CSV file has no headings or tables (use rows= and cols=)",
                source.path
            );
        }
        Ok(source)
    }

    /// Whether the quote is a table built from rows and columns (rather than verbatim lines).
    fn is_table(&self) -> bool {
        self.path.ends_with(".csv")
            || !self.rows.is_empty()
            || self.cols.is_some()
            || self.table.is_some()
    }

    /// The text this source renders to, read under `root`.
    pub fn render(&self, root: &Path) -> Result<String> {
        let rel = Path::new(&self.path);
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            bail!(
                "{}: the source must be a path inside the repository (relative, no `..`)",
                self.path
            );
        }
        let file = root.join(rel);
        let text = fs::read_to_string(&file)
            .with_context(|| format!("{}: cannot read the source file", self.path))?;
        let text = text.replace("\r\n", "\n");
        if self.path.ends_with(".csv") {
            let table = parse_csv(&text).with_context(|| self.path.clone())?;
            return select(&table, self).with_context(|| self.path.clone());
        }
        let lines: Vec<&str> = text.lines().collect();
        let section: Vec<&str> = match &self.heading {
            Some(h) => section(&lines, h).with_context(|| self.path.clone())?,
            None => lines,
        };
        if self.is_table() {
            let n = self.table.unwrap_or(1);
            let Some(table) = markdown_table(&section, n) else {
                bail!(
                    "{}: no Markdown table number {n} to select rows or columns from",
                    self.describe()
                );
            };
            return select(&table, self).with_context(|| self.describe());
        }
        let out = trim_blank(&section).join("\n");
        if out.is_empty() {
            bail!("{}: nothing to quote (empty section)", self.describe());
        }
        Ok(out)
    }

    /// `path#heading`, as written.
    fn describe(&self) -> String {
        match &self.heading {
            Some(h) => format!("{}#{h}", self.path),
            None => self.path.clone(),
        }
    }
}

/// One quote block of a document.
#[derive(Debug, Clone)]
pub struct Block {
    /// 1-based line of the `<!-- quote: … -->` marker.
    pub line: usize,
    /// 0-based index of the marker line and of the `<!-- /quote -->` line.
    pub start: usize,
    pub end: usize,
    /// What follows `quote:`, trimmed.
    pub spec: String,
    /// The marker's indentation, repeated on every generated line.
    pub indent: String,
}

/// A quote block whose content is not what its source renders to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// The document, relative to the root.
    pub doc: PathBuf,
    /// 1-based line of its `<!-- quote: … -->` marker.
    pub line: usize,
    /// What it quotes, as written after `quote:`.
    pub source: String,
}

impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: quote of {}",
            self.doc.display(),
            self.line,
            self.source
        )
    }
}

const START: &str = "<!-- quote:";
const END: &str = "<!-- /quote -->";

/// The quote blocks of a document's text, outside fenced code; an unterminated block or a
/// malformed marker is an error naming `doc` and the line.
pub fn parse_blocks(doc: &Path, text: &str) -> Result<Vec<Block>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if let Some((ch, len)) = fence {
            if is_fence_close(t, ch, len) {
                fence = None;
            }
            i += 1;
            continue;
        }
        if let Some(open) = fence_open(t) {
            fence = Some(open);
            i += 1;
            continue;
        }
        if t == END {
            bail!(
                "{}:{}: `{END}` without an opening `<!-- quote: … -->`",
                doc.display(),
                i + 1
            );
        }
        if let Some(rest) = t.strip_prefix(START) {
            let Some(spec) = rest.strip_suffix("-->") else {
                bail!(
                    "{}:{}: a quote marker must end with `-->` on the same line",
                    doc.display(),
                    i + 1
                );
            };
            let spec = spec.trim().to_string();
            let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
            let mut end = None;
            for (j, l) in lines.iter().enumerate().skip(i + 1) {
                let lt = l.trim();
                if lt == END {
                    end = Some(j);
                    break;
                }
                if lt.starts_with(START) {
                    bail!(
                        "{}:{}: unterminated quote block ({spec}): another starts at line {} before `{END}`",
                        doc.display(),
                        i + 1,
                        j + 1
                    );
                }
            }
            let Some(end) = end else {
                bail!(
                    "{}:{}: unterminated quote block ({spec}): no `{END}` after it",
                    doc.display(),
                    i + 1
                );
            };
            blocks.push(Block {
                line: i + 1,
                start: i,
                end,
                spec,
                indent,
            });
            i = end + 1;
            continue;
        }
        i += 1;
    }
    Ok(blocks)
}

/// The lines a block's content should be (between its markers), for rendered `content`.
fn block_body(indent: &str, content: &str) -> Vec<String> {
    let mut body = vec![String::new()];
    for l in content.lines() {
        body.push(if l.is_empty() {
            String::new()
        } else {
            format!("{indent}{l}")
        });
    }
    body.push(String::new());
    body
}

/// A document's text with every quote block regenerated from `root`, and the stale ones.
/// Errors name the document and line.
pub fn render_document(root: &Path, doc: &Path, text: &str) -> Result<(String, Vec<Stale>)> {
    let blocks = parse_blocks(doc, text)?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut stale = Vec::new();
    let mut errors = Vec::new();
    let mut next = 0;
    for b in &blocks {
        out.extend(lines[next..=b.start].iter().map(|s| s.to_string()));
        let rendered = Source::parse(&b.spec).and_then(|s| s.render(root));
        match rendered {
            Ok(content) => {
                let body = block_body(&b.indent, &content);
                let current = &lines[b.start + 1..b.end];
                if current.len() != body.len() || current.iter().zip(&body).any(|(a, b)| *a != b) {
                    stale.push(Stale {
                        doc: doc.to_path_buf(),
                        line: b.line,
                        source: b.spec.clone(),
                    });
                }
                out.extend(body);
            }
            Err(e) => {
                errors.push(format!(
                    "{}:{}: quote {}: {e:#}",
                    doc.display(),
                    b.line,
                    b.spec
                ));
                out.extend(lines[b.start + 1..b.end].iter().map(|s| s.to_string()));
            }
        }
        out.push(lines[b.end].to_string());
        next = b.end + 1;
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    out.extend(lines[next..].iter().map(|s| s.to_string()));
    let mut new = out.join("\n");
    if text.ends_with('\n') {
        new.push('\n');
    }
    Ok((new, stale))
}

/// The documents holding quote blocks: `README.md` and `docs/*.md` under `root` (relative
/// paths, sorted).
pub fn documents(root: &Path) -> Result<Vec<PathBuf>> {
    let mut docs = Vec::new();
    if root.join("README.md").is_file() {
        docs.push(PathBuf::from("README.md"));
    }
    let dir = root.join("docs");
    if dir.is_dir() {
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") && entry.path().is_file() {
                names.push(name);
            }
        }
        names.sort();
        docs.extend(names.into_iter().map(|n| Path::new("docs").join(n)));
    }
    Ok(docs)
}

/// A document as read and as regenerated, with its stale blocks.
struct Rendered {
    doc: PathBuf,
    old: String,
    new: String,
    stale: Vec<Stale>,
}

/// Renders every document; errors of all documents are gathered into one.
fn render_all(root: &Path) -> Result<Vec<Rendered>> {
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for doc in documents(root)? {
        let path = root.join(&doc);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: cannot read: {e}", doc.display()));
                continue;
            }
        };
        match render_document(root, &doc, &text) {
            Ok((new, stale)) => all.push(Rendered {
                doc,
                old: text,
                new,
                stale,
            }),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("quote blocks in error:\n{}", errors.join("\n"));
    }
    Ok(all)
}

/// The stale quote blocks of `README.md` and `docs/*.md` under `root`, in document order.
/// A block in error (missing source, heading or column not found, unterminated) is an error
/// naming its document and line.
pub fn check(root: &Path) -> Result<Vec<Stale>> {
    Ok(render_all(root)?
        .into_iter()
        .flat_map(|r| r.stale)
        .collect())
}

/// Regenerates the stale quote blocks under `root`, each changed document written to a
/// scratch file and renamed over it; returns the blocks regenerated. Writes nothing when any
/// block is in error.
pub fn write(root: &Path) -> Result<Vec<Stale>> {
    let mut regenerated = Vec::new();
    for r in render_all(root)? {
        if r.new != r.old {
            atomic::write(&root.join(&r.doc), r.new.as_bytes())
                .with_context(|| format!("writing {}", r.doc.display()))?;
        }
        regenerated.extend(r.stale);
    }
    Ok(regenerated)
}

fn count_blocks(root: &Path) -> Result<usize> {
    let mut n = 0;
    for doc in documents(root)? {
        let text = fs::read_to_string(root.join(&doc))?;
        n += parse_blocks(&doc, &text)?.len();
    }
    Ok(n)
}

/// A fence opening line: three or more backticks or tildes.
fn fence_open(t: &str) -> Option<(char, usize)> {
    let ch = t.chars().next()?;
    if ch != '`' && ch != '~' {
        return None;
    }
    let len = t.chars().take_while(|&c| c == ch).count();
    (len >= 3).then_some((ch, len))
}

fn is_fence_close(t: &str, ch: char, len: usize) -> bool {
    let n = t.chars().take_while(|&c| c == ch).count();
    n >= len && t[n * ch.len_utf8()..].trim().is_empty()
}

/// An ATX heading: (level, text).
fn heading(line: &str) -> Option<(usize, String)> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None;
    }
    let level = t.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut text = rest.trim();
    // An optional closing sequence of #s (preceded by a space).
    let stripped = text.trim_end_matches('#');
    if stripped.len() < text.len() && (stripped.is_empty() || stripped.ends_with([' ', '\t'])) {
        text = stripped.trim_end();
    }
    Some((level, text.to_string()))
}

/// The lines under the one heading with text `wanted`, to the next heading of the same or a
/// higher level (headings inside fenced code do not count).
fn section<'a>(lines: &[&'a str], wanted: &str) -> Result<Vec<&'a str>> {
    let mut headings = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if let Some((ch, len)) = fence {
            if is_fence_close(t, ch, len) {
                fence = None;
            }
            continue;
        }
        if let Some(open) = fence_open(t) {
            fence = Some(open);
            continue;
        }
        if let Some((level, text)) = heading(line) {
            headings.push((i, level, text));
        }
    }
    let found: Vec<&(usize, usize, String)> =
        headings.iter().filter(|(_, _, t)| t == wanted).collect();
    let &&(at, level, _) = match found.as_slice() {
        [] => {
            let known: Vec<&str> = headings.iter().map(|(_, _, t)| t.as_str()).collect();
            bail!(
                "heading `{wanted}` not found (headings: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join("; ")
                }
            )
        }
        [one] => one,
        many => bail!(
            "heading `{wanted}` is ambiguous: {} headings have that text (lines {})",
            many.len(),
            many.iter()
                .map(|h| (h.0 + 1).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let end = headings
        .iter()
        .find(|(i, l, _)| *i > at && *l <= level)
        .map_or(lines.len(), |h| h.0);
    Ok(lines[at + 1..end].to_vec())
}

fn trim_blank<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let first = lines.iter().position(|l| !l.trim().is_empty());
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    match (first, last) {
        (Some(a), Some(b)) => lines[a..=b].to_vec(),
        _ => Vec::new(),
    }
}

/// A table: header and rows of cells, as the file spells them.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// RFC 4180 CSV: quoted fields may hold commas, quotes (doubled) and line breaks.
fn parse_csv(text: &str) -> Result<Table> {
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        bail!("unterminated quoted field");
    }
    if any {
        record.push(field);
        records.push(record);
    }
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        bail!("empty CSV file");
    };
    let rows: Vec<Vec<String>> = records
        .filter(|r| !(r.len() == 1 && r[0].is_empty()))
        .collect();
    for (i, r) in rows.iter().enumerate() {
        if r.len() != header.len() {
            bail!(
                "CSV record {} has {} fields, the header {}",
                i + 2,
                r.len(),
                header.len()
            );
        }
    }
    Ok(Table { header, rows })
}

/// Splits a Markdown table row into its cells (trimmed; `\|` stays in the cell).
fn md_cells(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = if t.ends_with('|') && !t.ends_with("\\|") {
        &t[..t.len() - 1]
    } else {
        t
    };
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut escaped = false;
    for c in t.chars() {
        if escaped {
            cell.push(c);
            escaped = false;
        } else if c == '\\' {
            cell.push(c);
            escaped = true;
        } else if c == '|' {
            cells.push(cell.trim().to_string());
            cell.clear();
        } else {
            cell.push(c);
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

fn is_delimiter_row(line: &str) -> bool {
    let cells = md_cells(line);
    !cells.is_empty()
        && cells.iter().all(|c| {
            let c = c.trim_matches(':');
            !c.is_empty() && c.chars().all(|ch| ch == '-')
        })
}

/// The `n`th (1-based) Markdown table among `lines` (header, delimiter row, body rows).
fn markdown_table(lines: &[&str], n: usize) -> Option<Table> {
    let is_row = |l: &str| l.trim_start().starts_with('|');
    let mut starts = (0..lines.len().saturating_sub(1)).filter(|&i| {
        is_row(lines[i]) && is_delimiter_row(lines[i + 1]) && (i == 0 || !is_row(lines[i - 1]))
    });
    let at = starts.nth(n.checked_sub(1)?)?;
    let header = md_cells(lines[at]);
    let rows = lines[at + 2..]
        .iter()
        .take_while(|l| is_row(l))
        .map(|l| md_cells(l))
        .collect();
    Some(Table { header, rows })
}

fn escape_cell(v: &str) -> String {
    // A CSV value may hold `|` or a line break, which a Markdown cell cannot.
    let mut out = String::with_capacity(v.len());
    let mut prev_backslash = false;
    for c in v.chars() {
        match c {
            '|' if !prev_backslash => out.push_str("\\|"),
            '\n' => out.push(' '),
            '\r' => {}
            _ => out.push(c),
        }
        prev_backslash = c == '\\';
    }
    out
}

/// The rows of `table` matching `source.rows`, its `source.cols`, as a Markdown table.
fn select(table: &Table, source: &Source) -> Result<String> {
    let index = |name: &str| -> Result<usize> {
        table
            .header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no column `{name}` (columns: {})", table.header.join(", ")))
    };
    let filters: Vec<(usize, &[String])> = source
        .rows
        .iter()
        .map(|(c, v)| Ok((index(c)?, v.as_slice())))
        .collect::<Result<_>>()?;
    let cols: Vec<usize> = match &source.cols {
        Some(cols) => cols.iter().map(|c| index(c)).collect::<Result<_>>()?,
        None => (0..table.header.len()).collect(),
    };
    let rows: Vec<&Vec<String>> = table
        .rows
        .iter()
        .filter(|r| {
            filters
                .iter()
                .all(|&(i, v)| r.get(i).is_some_and(|cell| v.contains(cell)))
        })
        .collect();
    if rows.is_empty() {
        if source.rows.is_empty() {
            bail!("the table has no rows");
        }
        bail!(
            "rows={} matches no row",
            source
                .rows
                .iter()
                .map(|(c, v)| format!("{c}={}", v.join("|")))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    let line = |cells: Vec<String>| format!("| {} |", cells.join(" | "));
    let mut out = vec![
        line(
            cols.iter()
                .map(|&i| escape_cell(&table.header[i]))
                .collect(),
        ),
        format!("|{}", "---|".repeat(cols.len())),
    ];
    for r in rows {
        out.push(line(
            cols.iter()
                .map(|&i| escape_cell(r.get(i).map_or("", String::as_str)))
                .collect(),
        ));
    }
    Ok(out.join("\n"))
}
