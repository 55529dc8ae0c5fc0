//! Bench's one table printer: a header and rows of cells, printed as a Markdown table or as plain
//! text in aligned columns.

/// Rows of cells under a header; every row has one cell per column.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    /// Columns right-aligned in [`Table::text`] (numbers); the others are left-aligned.
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers, all left-aligned.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            right: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns these columns (by index) in [`Table::text`].
    pub fn right(mut self, columns: impl IntoIterator<Item = usize>) -> Self {
        for c in columns {
            self.right[c] = true;
        }
        self
    }

    /// Adds a row of `cells`, one per column.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.headers.len(),
            "a table row needs one cell per column"
        );
        self.rows.push(cells);
    }

    /// `| a | b |` lines under a `|---|---|` rule, cells unpadded (as tables are pasted into the
    /// docs), a `|` in a cell escaped.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut out = line(&self.headers);
        out.push_str(&format!("|{}\n", "---|".repeat(self.headers.len())));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }

    /// Each column as wide as its widest cell (header included), two spaces between columns, no
    /// trailing spaces.
    pub fn text(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                std::iter::once(&self.headers)
                    .chain(&self.rows)
                    .map(|row| row[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .zip(&self.right)
                .map(|((cell, &width), &right)| {
                    if right {
                        format!("{cell:>width$}")
                    } else {
                        format!("{cell:<width$}")
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Table {
        let mut table = Table::new(&["name", "n", "max |Δ|"]).right([1]);
        table.row(vec!["a".into(), "1234".into(), "0.1".into()]);
        table.row(vec!["longer".into(), "5".into(), "".into()]);
        table
    }

    #[test]
    fn markdown_is_unpadded_with_pipes_escaped() {
        assert_eq!(
            example().markdown(),
            "| name | n | max \\|Δ\\| |\n|---|---|---|\n| a | 1234 | 0.1 |\n| longer | 5 |  |\n"
        );
    }

    #[test]
    fn text_aligns_each_column_to_its_widest_cell() {
        assert_eq!(
            example().text(),
            "name       n  max |Δ|\na       1234  0.1\nlonger     5\n"
        );
    }
}
