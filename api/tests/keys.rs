//! Every key is defined once, in `api/src/keys.rs`: no other source file in the workspace defines
//! a constant with a key's value, and no library or binary code outside it spells a key as a
//! string literal (tests may, to check the wire format as written).

use std::path::{Path, PathBuf};

const KEYS: &str = include_str!("../src/keys.rs");

/// The values of the `pub const NAME: &str = "value";` lines of keys.rs.
fn key_values() -> Vec<String> {
    KEYS.lines()
        .filter_map(|l| {
            l.trim().strip_prefix("pub const ")?.split_once("= \"")?.1.strip_suffix("\";").map(str::to_string)
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "target" | ".git" | "node_modules" | "fuzz") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The part of a source file that is not a unit test module.
fn non_test(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn every_key_is_defined_once_in_keys_rs() {
    let values = key_values();
    assert!(
        values.len() >= 25,
        "keys.rs lists its keys as `pub const NAME: &str = \"value\";` ({} found)",
        values.len()
    );
    let mut seen = std::collections::HashSet::new();
    for v in &values {
        assert!(seen.insert(v), "keys.rs defines {v:?} twice");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let keys_rs = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/keys.rs").canonicalize().expect("keys.rs");
    let mut problems = Vec::new();
    for file in files {
        if file.canonicalize().ok().as_ref() == Some(&keys_rs) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file");
        let is_src = file.components().any(|c| c.as_os_str() == "src");
        for (n, line) in text.lines().enumerate() {
            for v in &values {
                let quoted = format!("\"{v}\"");
                if line.contains("const ") && line.contains(&quoted) {
                    problems.push(format!(
                        "{}:{}: defines {v:?} again; use gantry_api::keys",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
        if is_src {
            for (n, line) in non_test(&text).lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for v in &values {
                    if code.contains(&format!("\"{v}\"")) {
                        problems.push(format!(
                            "{}:{}: spells {v:?}; use the constant from gantry_api::keys",
                            file.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "keys defined or spelled outside api/src/keys.rs:\n  {}",
        problems.join("\n  ")
    );
}

/// The source files of every library crate (all but the CLI).
fn library_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for krate in ["api", "core", "sim", "scheduler", "admission-webhook", "node-agent", "quota-api", "serve"]
    {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    files
}

/// Library crates log through `tracing` (the CLI installs one subscriber, filtered by
/// `RUST_LOG`); only the CLI writes its user-facing messages to standard error itself.
#[test]
fn no_library_prints_to_standard_error() {
    let files = library_sources();
    assert!(files.len() > 30, "the library sources are found ({})", files.len());
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file");
        for (n, line) in non_test(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if code.contains("eprintln!(") || code.contains("eprint!(") {
                problems.push(format!("{}:{}: use tracing (info!, warn!, error!)", file.display(), n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "libraries printing to standard error:\n  {}", problems.join("\n  "));
}

/// Library crates return typed errors at their boundaries (thiserror enums that keep their
/// sources), so callers can tell causes apart; only the CLI turns errors into strings. A public
/// function whose error is a bare `String`, or a `FromStr` whose `Err` is one, is flagged.
#[test]
fn no_library_function_returns_a_bare_string_error() {
    let files = library_sources();
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a source file");
        // Whether the function whose signature is being read is public (signatures may span lines).
        let mut public = false;
        for (n, line) in non_test(&text).lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default().trim();
            if code.contains("fn ") {
                public = code.starts_with("pub fn ") || code.starts_with("pub async fn ");
            }
            let bare =
                code.contains("-> Result<") && (code.ends_with(", String> {") || code.ends_with(", String>"));
            if (public && bare) || code == "type Err = String;" {
                problems.push(format!("{}:{}: return a thiserror enum, not String", file.display(), n + 1));
            }
        }
    }
    assert!(problems.is_empty(), "public functions with String errors:\n  {}", problems.join("\n  "));
}
