//! `docs/subgradients.md` sends readers to exact lines of the kernels
//! ("`code` (line N)" or "`code`, line N"); this keeps every such pointer
//! true as the code moves.

use std::path::Path;

#[test]
fn every_line_pointer_in_the_subgradient_tutorial_shows_the_code_it_names() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/subgradients.md")).unwrap();
    let mut checked = 0;
    for row in doc.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | step | `file` | what to read |
        let Some(file) = cells.get(2).and_then(|c| c.split('`').nth(1)).filter(|f| f.ends_with(".rs")) else {
            continue;
        };
        let source = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let lines: Vec<&str> = source.lines().collect();
        // Pieces alternate outside / inside backticks: a code piece followed by
        // " (line N)" or ", line N" is a pointer.
        let pieces: Vec<&str> = cells[3].split('`').collect();
        for (k, code) in pieces.iter().enumerate().filter(|(k, _)| k % 2 == 1) {
            let after = pieces.get(k + 1).copied().unwrap_or("");
            let number = after.strip_prefix(" (line ").or_else(|| after.strip_prefix(", line "));
            let Some(n) = number.and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
            else {
                continue;
            };
            let line = lines.get(n - 1).unwrap_or_else(|| panic!("{file} has no line {n}"));
            assert!(line.contains(code), "{file}:{n} should show `{code}` but reads: {line}");
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} pointers found: has the table's format changed?");
}
