//! `docs/subgradients.md` sends readers to code by naming it: each row of
//! its table gives a file and the pieces of code (in backticks) to search
//! that file for. This keeps every such pointer true as the code changes.

use std::path::Path;

#[test]
fn every_code_piece_the_subgradient_tutorial_points_to_is_in_its_file() {
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
        // Pieces alternate outside / inside backticks; the inside ones are code,
        // except names of other files.
        for code in cells[3].split('`').skip(1).step_by(2).filter(|c| !c.ends_with(".rs")) {
            assert!(source.contains(code), "{file} should contain `{code}` (docs/subgradients.md, row: {})", cells[1]);
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} pointers found: has the table's format changed?");
}
