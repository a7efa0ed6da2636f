//! Tables as etcdctl draws them (olekukonko/tablewriter with right-aligned cells): `+---+` rules,
//! upper-case headers centred, one space of padding in every cell.

pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| width(r.get(i).map_or("", String::as_str)))
                .chain([width(&header[i])])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
    let mut out = rule.clone();
    for (h, w) in header.iter().zip(&widths) {
        let pad = w - width(h);
        let left = pad / 2;
        out.push_str(&format!("| {}{}{} ", " ".repeat(left), h, " ".repeat(pad - left)));
    }
    out.push_str("|\n");
    out.push_str(&rule);
    for r in rows {
        for (i, w) in widths.iter().enumerate() {
            let cell = r.get(i).map_or("", String::as_str);
            out.push_str(&format!("| {}{} ", " ".repeat(w - width(cell)), cell));
        }
        out.push_str("|\n");
    }
    out.push_str(&rule);
    out
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let v = (n as f64 / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if v < 10.0 { format!("{v:.1} {}", UNITS[e]) } else { format!("{v:.0} {}", UNITS[e]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_tablewriter() {
        let t = render(
            &["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"],
            &[vec![
                "d7aa4b594d7f2958".into(),
                "started".into(),
                "a".into(),
                "http://127.0.0.1:41380".into(),
                "http://127.0.0.1:41379".into(),
                "false".into(),
            ]],
        );
        let want = "\
+------------------+---------+------+------------------------+------------------------+------------+
|        ID        | STATUS  | NAME |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |
+------------------+---------+------+------------------------+------------------------+------------+
| d7aa4b594d7f2958 | started |    a | http://127.0.0.1:41380 | http://127.0.0.1:41379 |      false |
+------------------+---------+------+------------------------+------------------------+------------+
";
        assert_eq!(t, want);
    }

    #[test]
    fn bytes_like_go_humanize() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(25_165_824), "25 MB");
    }
}
