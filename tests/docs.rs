//! Documents that agree with the tables: the quote blocks of README.md and docs/*.md
//! (`src/quote.rs`, `opencarbon docs`), and the committed documents checked against the
//! committed results files.

use std::fs;
use std::path::Path;
use std::process::Command;

use opencarbon::quote::{self, Source};

const BIN: &str = env!("CARGO_BIN_EXE_opencarbon");

const RESULTS_MD: &str = "## Comparison

Intro line.

### beijing

| variant | p |
|---|---|
| gbt | 0.4869 (1.0000) |
| network | 0.0666 (0.2665) |

### shanghai

| variant | p |
|---|---|
| gbt | 0.5667 (1.0000) |

## Ranks over datasets

| metric | Friedman χ² | p |
|---|---|---|
| R² | 7.429 | 0.1907 |
";

const RESULTS_CSV: &str = "dataset,variant,p_t,p_t_holm,verdict
beijing,gbt,0.48687983399095547,1.0,n.s.
beijing,network,0.06661885242717386,0.26647540970869543,n.s.
shanghai,network,0.1036,0.4146,\"n.s., barely\"
";

/// A repository root with one results directory and the given README.
fn repo(readme: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("results/exp")).unwrap();
    fs::create_dir_all(dir.path().join("docs")).unwrap();
    fs::write(dir.path().join("results/exp/comparison.md"), RESULTS_MD).unwrap();
    fs::write(dir.path().join("results/exp/comparison.csv"), RESULTS_CSV).unwrap();
    fs::write(dir.path().join("README.md"), readme).unwrap();
    dir
}

fn render(root: &Path, spec: &str) -> String {
    Source::parse(spec).unwrap().render(root).unwrap()
}

#[test]
fn heading_section_runs_to_the_next_heading_of_the_same_level() {
    let dir = repo("");
    // A level-3 section stops at the next level-3 heading.
    assert_eq!(
        render(dir.path(), "results/exp/comparison.md#beijing"),
        "| variant | p |\n|---|---|\n| gbt | 0.4869 (1.0000) |\n| network | 0.0666 (0.2665) |"
    );
    // A level-2 section holds its level-3 subsections and stops at the next level 2.
    let s = render(dir.path(), "results/exp/comparison.md#Comparison");
    assert!(s.starts_with("Intro line.\n\n### beijing"), "{s}");
    assert!(s.ends_with("| gbt | 0.5667 (1.0000) |"), "{s}");
    // The last section runs to the end of the file, trimmed.
    assert_eq!(
        render(dir.path(), "results/exp/comparison.md#Ranks over datasets"),
        "| metric | Friedman χ² | p |\n|---|---|---|\n| R² | 7.429 | 0.1907 |"
    );
    // Without a heading: the whole file.
    assert_eq!(
        render(dir.path(), "results/exp/comparison.md"),
        RESULTS_MD.trim_end()
    );
    // Rows and columns of a Markdown table under a heading.
    assert_eq!(
        render(
            dir.path(),
            "results/exp/comparison.md#Ranks over datasets rows=metric=R² cols=Friedman χ²,p"
        ),
        "| Friedman χ² | p |\n|---|---|\n| 7.429 | 0.1907 |"
    );
    // The second table of a section (here of the whole file), and a table that is not there.
    assert_eq!(
        render(dir.path(), "results/exp/comparison.md table=2 cols=variant"),
        "| variant |\n|---|\n| gbt |"
    );
    let e = Source::parse("results/exp/comparison.md#beijing table=2")
        .unwrap()
        .render(dir.path())
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("no Markdown table number 2"),
        "{e:#}"
    );
}

#[test]
fn csv_rows_render_as_a_table_with_the_values_as_written() {
    let dir = repo("");
    assert_eq!(
        render(
            dir.path(),
            "results/exp/comparison.csv rows=dataset=beijing,variant=network cols=variant,p_t_holm,verdict"
        ),
        "| variant | p_t_holm | verdict |\n|---|---|---|\n| network | 0.26647540970869543 | n.s. |"
    );
    // Quoted fields are read whole; several rows keep the file's order.
    assert_eq!(
        render(
            dir.path(),
            "results/exp/comparison.csv rows=variant=network cols=dataset,verdict"
        ),
        "| dataset | verdict |\n|---|---|\n| beijing | n.s. |\n| shanghai | n.s., barely |"
    );
    // cols before rows, all columns when cols is left out.
    assert_eq!(
        render(
            dir.path(),
            "results/exp/comparison.csv cols=p_t rows=dataset=shanghai"
        ),
        "| p_t |\n|---|\n| 0.1036 |"
    );
    let all = render(dir.path(), "results/exp/comparison.csv rows=variant=gbt");
    assert_eq!(
        all,
        "| dataset | variant | p_t | p_t_holm | verdict |\n|---|---|---|---|---|\n| beijing | gbt | 0.48687983399095547 | 1.0 | n.s. |"
    );
    // Either of several values; a value holding a comma in double quotes.
    assert_eq!(
        render(
            dir.path(),
            "results/exp/comparison.csv rows=variant=gbt|network,dataset=beijing cols=variant"
        ),
        "| variant |\n|---|\n| gbt |\n| network |"
    );
    assert_eq!(
        render(
            dir.path(),
            "results/exp/comparison.csv rows=verdict=\"n.s., barely\" cols=dataset,\"p_t\""
        ),
        "| dataset | p_t |\n|---|---|\n| shanghai | 0.1036 |"
    );
    // An unknown column and a filter matching nothing are errors saying so.
    let e = Source::parse("results/exp/comparison.csv rows=variant=network cols=nope")
        .unwrap()
        .render(dir.path())
        .unwrap_err();
    assert!(format!("{e:#}").contains("no column `nope`"), "{e:#}");
    let e = Source::parse("results/exp/comparison.csv rows=variant=ridge")
        .unwrap()
        .render(dir.path())
        .unwrap_err();
    assert!(format!("{e:#}").contains("matches no row"), "{e:#}");
}

#[test]
fn malformed_sources_are_errors_not_panics() {
    for bad in [
        "",
        "results/exp/comparison.md#",
        "results/exp/comparison.csv#beijing",
        "results/exp/x.json",
        "results/exp/comparison.csv rows=variant",
        "results/exp/comparison.csv cols=",
        "results/exp/comparison.csv cols=a,,b",
        "results/exp/comparison.csv cols=\"a,b",
        "results/exp/comparison.md table=0",
        "results/exp/comparison.csv table=1",
        "results/exp/comparison.csv cols=a cols=b",
    ] {
        assert!(Source::parse(bad).is_err(), "{bad:?} parsed");
    }
    let dir = repo("");
    for bad in [
        "../outside.md",
        "/etc/hostname.md",
        "results/exp/missing.md",
        "results/exp/comparison.md#Nowhere",
        "results/exp/comparison.md#beijing rows=metric=R²",
    ] {
        let r = Source::parse(bad).and_then(|s| s.render(dir.path()));
        assert!(r.is_err(), "{bad:?} rendered");
    }
}

#[test]
fn unterminated_block_is_an_error_naming_the_document_and_line() {
    let doc = "# Title\n\nText.\n\n<!-- quote: results/exp/comparison.md#beijing -->\n\nold\n";
    let dir = repo(doc);
    let e = quote::check(dir.path()).unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("README.md:5"), "{msg}");
    assert!(msg.contains("unterminated"), "{msg}");
    // --write refuses too, and leaves the document as it was.
    assert!(quote::write(dir.path()).is_err());
    assert_eq!(
        fs::read_to_string(dir.path().join("README.md")).unwrap(),
        doc
    );
    // A second marker before the end is the same error.
    let doc = "<!-- quote: results/exp/comparison.md#beijing -->\n<!-- quote: results/exp/comparison.md -->\n<!-- /quote -->\n";
    fs::write(dir.path().join("README.md"), doc).unwrap();
    let msg = format!("{:#}", quote::check(dir.path()).unwrap_err());
    assert!(
        msg.contains("README.md:1") && msg.contains("line 2"),
        "{msg}"
    );
}

#[test]
fn missing_source_and_heading_name_the_document_and_line() {
    let doc = "Intro.\n\n<!-- quote: results/exp/comparison.md#Nowhere -->\n<!-- /quote -->\n\n\
               <!-- quote: results/gone/summary.md -->\n<!-- /quote -->\n";
    let dir = repo("");
    fs::write(dir.path().join("docs/a.md"), doc).unwrap();
    let msg = format!("{:#}", quote::check(dir.path()).unwrap_err());
    assert!(
        msg.contains("docs/a.md:3") && msg.contains("heading `Nowhere` not found"),
        "{msg}"
    );
    assert!(
        msg.contains("docs/a.md:6") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn stale_blocks_are_listed_and_write_regenerates_them() {
    let doc = "# Notes\n\nThe p-value:\n\n\
               <!-- quote: results/exp/comparison.csv rows=dataset=beijing,variant=network cols=p_t_holm -->\n\
               | p_t_holm |\n|---|\n| 0.20 |\n<!-- /quote -->\n\n\
               ```text\n<!-- quote: results/exp/not-read-inside-a-fence.md -->\n```\n\n\
               - a list item:\n\n  <!-- quote: results/exp/comparison.md#shanghai -->\n  <!-- /quote -->\n\nEnd.\n";
    let dir = repo(doc);
    let stale = quote::check(dir.path()).unwrap();
    assert_eq!(stale.len(), 2, "{stale:?}");
    assert_eq!(stale[0].doc, Path::new("README.md"));
    assert_eq!(stale[0].line, 5);
    assert!(stale[0]
        .source
        .starts_with("results/exp/comparison.csv rows="));
    assert_eq!(stale[1].line, 17);
    assert!(stale[0]
        .to_string()
        .starts_with("README.md:5: quote of results/exp/comparison.csv"));

    // The command exits non-zero naming each stale block.
    let out = Command::new(BIN)
        .args(["docs", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("README.md:5") && err.contains("README.md:17"),
        "{err}"
    );

    // --write regenerates both, leaving the rest (the fenced example included) as it was.
    let out = Command::new(BIN)
        .args(["docs", "--write", "--root"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(text.contains(
        "cols=p_t_holm -->\n\n| p_t_holm |\n|---|\n| 0.26647540970869543 |\n\n<!-- /quote -->\n"
    ), "{text}");
    assert!(text.contains(
        "  <!-- quote: results/exp/comparison.md#shanghai -->\n\n  | variant | p |\n  |---|---|\n  | gbt | 0.5667 (1.0000) |\n\n  <!-- /quote -->\n"
    ), "{text}");
    assert!(text.contains("```text\n<!-- quote: results/exp/not-read-inside-a-fence.md -->\n```"));
    assert!(text.starts_with("# Notes\n") && text.ends_with("\nEnd.\n"));
    assert!(quote::check(dir.path()).unwrap().is_empty());
    // No scratch file left beside it.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.contains("README")).count(),
        1,
        "{names:?}"
    );

    // A changed table makes the block stale again; the check now passes.
    assert!(quote::write(dir.path()).unwrap().is_empty());
    fs::write(
        dir.path().join("results/exp/comparison.csv"),
        RESULTS_CSV.replace("0.26647540970869543", "0.3"),
    )
    .unwrap();
    let stale = quote::check(dir.path()).unwrap();
    assert_eq!(stale.iter().map(|s| s.line).collect::<Vec<_>>(), vec![5]);
}

/// The test command's docs check: every quote block of the committed README.md and docs/*.md
/// holds what the committed results file it names says. On failure: `opencarbon docs --write`.
#[test]
fn committed_docs_quote_current_tables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stale = quote::check(root).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        stale.is_empty(),
        "stale quote blocks (run `cargo run -- docs --write`):\n{}",
        stale
            .iter()
            .map(|s| format!("  {s}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
