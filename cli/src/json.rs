//! What `--json` prints, the same shape for every command: one object carrying
//! `schema_version` (raised when a field changes meaning or goes away; new fields do not
//! raise it), on success the command's report, on failure `error` and `exit_status`.

use serde_json::{Value, json};

/// The version of every command's JSON output.
pub const SCHEMA_VERSION: u32 = 2;

/// A command's report (a JSON object) with `schema_version` added, pretty-printed.
pub fn document(mut report: Value) -> String {
    if let Value::Object(m) = &mut report {
        m.insert("schema_version".into(), json!(SCHEMA_VERSION));
    }
    serde_json::to_string_pretty(&report).unwrap_or_default()
}

/// What `--json` prints when the command failed (its one-line message also goes to stderr).
pub fn error(message: &str, exit_status: i32) -> String {
    document(json!({ "error": message, "exit_status": exit_status }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_document_carries_the_schema_version() {
        let d: Value = serde_json::from_str(&document(json!({"blocks": 3}))).unwrap();
        assert_eq!(d, json!({"blocks": 3, "schema_version": 2}));
        let e: Value = serde_json::from_str(&error("nothing mounted", 8)).unwrap();
        assert_eq!(e, json!({"error": "nothing mounted", "exit_status": 8, "schema_version": 2}));
    }
}
