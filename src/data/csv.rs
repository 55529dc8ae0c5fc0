//! A strict little CSV reader (RFC 4180 quoting) whose errors name the file, line and column.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

pub struct CsvTable {
    pub path: String,
    pub header: Vec<String>,
    /// (line number, fields)
    pub rows: Vec<(usize, Vec<String>)>,
    columns: HashMap<String, usize>,
}

impl CsvTable {
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines
            .next()
            .with_context(|| format!("{origin}: the file is empty (no header)"))?;
        let header: Vec<String> =
            split_line(header).with_context(|| format!("{origin}: line 1"))?;
        let mut columns = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            if columns.insert(name.clone(), i).is_some() {
                bail!("{origin}: line 1: column `{name}` appears twice");
            }
        }
        let mut rows = Vec::new();
        for (no, line) in lines {
            let fields = split_line(line).with_context(|| format!("{origin}: line {}", no + 1))?;
            if fields.len() != header.len() {
                bail!(
                    "{origin}: line {}: {} fields, but the header has {}",
                    no + 1,
                    fields.len(),
                    header.len()
                );
            }
            rows.push((no + 1, fields));
        }
        Ok(Self {
            path: origin.to_string(),
            header,
            rows,
            columns,
        })
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.get(name).copied()
    }

    pub fn require(&self, name: &str) -> Result<usize> {
        self.column(name).with_context(|| {
            format!(
                "{}: no column `{name}` (columns: {})",
                self.path,
                self.header.join(", ")
            )
        })
    }

    /// Parses field `col` of the row at `line`, naming file, line and column on failure.
    pub fn parse_field<T: std::str::FromStr>(
        &self,
        line: usize,
        fields: &[String],
        col: usize,
    ) -> Result<T> {
        let raw = fields[col].trim();
        raw.parse::<T>().map_err(|_| {
            anyhow::anyhow!(
                "{}: line {line}: column `{}` has `{raw}`, which is not a valid {}",
                self.path,
                self.header[col],
                std::any::type_name::<T>()
            )
        })
    }
}

/// Splits one CSV line, honouring double quotes ("" inside quotes is a quote).
pub fn split_line(line: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    if quoted {
        bail!("unterminated quote");
    }
    fields.push(field);
    Ok(fields)
}

/// Quotes a field when it needs it.
pub fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_fields() {
        let f = super::split_line(r#"a,"(1,2)","say ""hi""",,x"#).unwrap();
        assert_eq!(f, vec!["a", "(1,2)", "say \"hi\"", "", "x"]);
        assert!(super::split_line("\"open").is_err());
    }
}
