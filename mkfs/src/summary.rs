//! What mkfs prints after a successful format.

use hammer2::format::FormatReport;
use hammer2::units::human;
use std::fmt::Write;

pub fn text(r: &FormatReport) -> String {
    let mut s = String::new();
    let label = if r.label.is_empty() { "(none)" } else { r.label.as_str() };
    let times = if r.copies == 1 { "once".to_string() } else { format!("{} times", r.copies) };
    // Writing to a String cannot fail.
    let _ = writeln!(s, "hammer2 filesystem created");
    let _ = writeln!(s, "  uuid     {}", r.uuid);
    let _ = writeln!(s, "  label    {label}");
    let _ = writeln!(s, "  size     {} usable (every block is stored {times})", human(r.capacity));
    let _ = writeln!(s, "  copies   {}", r.copies);
    let _ = writeln!(s, "  check    {}", r.check);
    let _ = writeln!(s, "  format   version {}", r.format_version);
    let _ = writeln!(s, "  compress {}", r.compression);
    let _ = writeln!(s, "  devices  {}", r.devices.len());
    let width = r.devices.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for (i, d) in r.devices.iter().enumerate() {
        let regions = if d.regions == 1 { "1 region".to_string() } else { format!("{} regions", d.regions) };
        let _ = writeln!(s, "    {i}  {:<width$}  {:>9}  {regions}", d.name, human(d.size));
    }
    s
}

pub fn json(r: &FormatReport) -> String {
    // FormatReport holds only strings and integers: serializing it cannot fail.
    hammer2_cli::json::document(serde_json::to_value(r).unwrap_or_default())
}
