//! The README's status table quotes measured figures; each must be one that docs/benchmarks.md
//! records, so the README cannot drift from the measurements.

use nbg_e2e::harness::cluster::repo_root;

/// Figures in `text`: a number (digits, `,` and `.`) followed by a unit word.
fn figures(text: &str) -> Vec<String> {
    const UNITS: [&str; 4] = ["ms", "s", "MiB", "API writes"];
    let mut found = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts_number =
            chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric());
        if !starts_number {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == ',' || chars[i] == '.') {
            i += 1;
        }
        let number: String = chars[start..i]
            .iter()
            .collect::<String>()
            .trim_end_matches(['.', ','])
            .to_string();
        let rest: String = chars[i..].iter().take(12).collect();
        if let Some(unit) = UNITS.iter().find(|u| {
            rest.strip_prefix(' ').is_some_and(|r| {
                r.starts_with(*u) && !r[u.len()..].starts_with(|c: char| c.is_alphanumeric())
            })
        }) {
            found.push(format!("{number} {unit}"));
        }
    }
    found
}

#[test]
fn every_figure_in_the_readme_status_table_is_in_the_benchmarks() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let benchmarks = std::fs::read_to_string(repo_root().join("docs/benchmarks.md"))
        .expect("docs/benchmarks.md");
    let table = readme
        .split_once("## Status")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(table, _)| table)
        .expect("a Status section");
    let quoted = figures(table);
    assert!(!quoted.is_empty(), "the status table quotes figures");
    let missing: Vec<&String> = quoted
        .iter()
        .filter(|f| !benchmarks.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "figures in the README's status table that docs/benchmarks.md does not record: {missing:?}"
    );
}

#[test]
fn figures_are_found_with_their_units() {
    assert_eq!(
        figures(
            "p99 673 ms, 3.00 API writes per trigger, 1,000 NVJs, within 4.3 s; 52.3 MiB. v1.35"
        ),
        ["673 ms", "3.00 API writes", "4.3 s", "52.3 MiB"]
    );
}
