// Comparing an encoding with a golden file of `tests/golden/` (see golden_bytes.rs: never
// regenerate one to make a test pass).
use std::path::PathBuf;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.bin"))
}

/// Compares `encoded` with the golden file `name`; writes the file only when it is absent.
pub fn assert_golden(name: &str, encoded: &[u8]) -> Vec<u8> {
    let path = golden_path(name);
    let Ok(golden) = std::fs::read(&path) else {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, encoded).unwrap();
        panic!("{}: golden file was absent and has been written; check it against FORMAT.md", path.display());
    };
    if let Some(at) = encoded.iter().zip(&golden).position(|(a, b)| a != b) {
        panic!(
            "{name}: byte {at} encodes as {:#04x}, the golden file has {:#04x}: a format change",
            encoded[at], golden[at]
        );
    }
    assert_eq!(encoded.len(), golden.len(), "{name}: encoded length differs from the golden file");
    golden
}

