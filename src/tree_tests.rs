//! The map cannot drift from the territory: every module a file declares is named in
//! that file's `//!` header, and every file and folder under `src/` is named in
//! ARCHITECTURE.md's tree.

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `x` of each `mod x;` line (any visibility; a `tests` module is implied).
fn declared_modules(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|line| {
            let rest = line
                .strip_prefix("pub(crate) ")
                .or(line.strip_prefix("pub "))
                .unwrap_or(line);
            rest.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .filter(|name| name != "tests" && name != "tree_tests")
        .collect()
}

#[test]
fn every_module_is_named_in_its_parents_header() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut missing = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("a source file");
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        for name in declared_modules(&text) {
            let named = [
                format!("`{name}`"),
                format!("`{name}.rs`"),
                format!("`{name}/`"),
            ]
            .iter()
            .any(|form| header.contains(form.as_str()));
            if !named {
                missing.push(format!(
                    "{}: mod {name}",
                    file.strip_prefix(src()).unwrap().display()
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules missing from their file's //! header: {missing:#?}"
    );
}

#[test]
fn every_source_file_is_in_the_architecture_tree() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
            .expect("docs/ARCHITECTURE.md");
    let tree = doc
        .split("## The tree")
        .nth(1)
        .and_then(|rest| rest.split("```").nth(1))
        .expect("ARCHITECTURE.md has a tree under \"## The tree\"");
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let missing: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(src()).unwrap())
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            let stem = f.file_stem().unwrap().to_string_lossy().to_string();
            // A folder's mod.rs and a tests.rs are named by their folder.
            if name == "mod.rs" || name == "tests.rs" {
                let folder = f
                    .parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                return !tree.contains(&format!("{folder}/"));
            }
            name != "tree_tests.rs" && !tree.contains(&name) && !tree.contains(&format!("{stem}/"))
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files missing from ARCHITECTURE.md's tree: {missing:#?}"
    );
}
