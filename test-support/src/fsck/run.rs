//! Running the real `fsck-hammer2` binary (installed as `fsck.hammer2`).

use crate::bins::FSCK;
use std::path::Path;
use std::process::{Command, Output};

pub fn bin() -> &'static Path {
    FSCK.path()
}

pub fn fsck(args: &[&str], devices: &[String]) -> Output {
    Command::new(bin()).args(args).args(devices).output().expect("run fsck-hammer2")
}

pub fn status(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs with `--json` and returns (status, report).
pub fn fsck_json(args: &[&str], devices: &[String]) -> (i32, serde_json::Value) {
    let mut a: Vec<&str> = args.to_vec();
    a.push("--json");
    let o = fsck(&a, devices);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}\nstderr: {}", String::from_utf8_lossy(&o.stderr)));
    (status(&o), v)
}

/// The kinds of the findings, sorted and deduplicated.
pub fn kinds(report: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = report["findings"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["kind"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    k.sort();
    k.dedup();
    k
}

pub fn messages(report: &serde_json::Value) -> String {
    report["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| format!("{} [{}]", f["message"].as_str().unwrap_or(""), f["repair"]["status"]))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
