//! Tables as etcdctl draws them (olekukonko/tablewriter with right-aligned cells): `+---+` rules,
//! upper-case headers centred, one space of padding in every cell.

/// Widest cell text before tablewriter wraps it onto more lines.
const MAX_CELL: usize = 30;

fn width(s: &str) -> usize {
    s.chars().count()
}

/// tablewriter's `WrapWords`: splits `words` into lines of at most `lim` columns, minimising the
/// sum of squared slack (a line that cannot fit costs an extra penalty).
fn wrap_words(words: &[&str], lim: usize) -> Vec<String> {
    const PENALTY: i64 = 100_000;
    let n = words.len();
    // length[i][j]: the width of words i..=j joined by spaces.
    let mut length = vec![vec![0i64; n]; n];
    for i in 0..n {
        length[i][i] = width(words[i]) as i64;
        for j in i + 1..n {
            length[i][j] = length[i][j - 1] + 1 + width(words[j]) as i64;
        }
    }
    let lim = lim as i64;
    let mut cost = vec![i64::from(i32::MAX); n];
    let mut next = vec![n; n];
    for i in (0..n).rev() {
        if length[i][n - 1] <= lim {
            cost[i] = 0;
            next[i] = n;
            continue;
        }
        for j in i + 1..n {
            let d = lim - length[i][j - 1];
            let mut c = d * d + cost[j];
            if length[i][j - 1] > lim {
                c += PENALTY;
            }
            if c < cost[i] {
                cost[i] = c;
                next[i] = j;
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..next[i]].join(" "));
        i = next[i];
    }
    lines
}

/// A cell's lines and the width it asks of its column: wrapped at word boundaries when wider than
/// [`MAX_CELL`] (a longer word stays whole and widens the limit), and then at least that wide.
fn cell_lines(cell: &str) -> (Vec<String>, usize) {
    if width(cell) <= MAX_CELL {
        return (vec![cell.to_string()], width(cell));
    }
    let words: Vec<&str> = cell.split(' ').collect();
    let lim = words.iter().map(|w| width(w)).max().unwrap_or(0).max(MAX_CELL);
    let lines = wrap_words(&words, lim);
    let w = lines.iter().map(|l| width(l)).max().unwrap_or(0).max(MAX_CELL);
    (lines, w)
}

pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let rows: Vec<Vec<(Vec<String>, usize)>> = rows
        .iter()
        .map(|r| (0..header.len()).map(|i| cell_lines(r.get(i).map_or("", String::as_str))).collect())
        .collect();
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].1).chain([width(&header[i])]).max().unwrap_or(0)).collect();
    let rule: String = widths.iter().map(|w| format!("+{}", "-".repeat(w + 2))).collect::<String>() + "+\n";
    let mut out = rule.clone();
    for (h, w) in header.iter().zip(&widths) {
        let pad = w - width(h);
        let left = pad / 2;
        out.push_str(&format!("| {}{}{} ", " ".repeat(left), h, " ".repeat(pad - left)));
    }
    out.push_str("|\n");
    out.push_str(&rule);
    for r in &rows {
        let height = r.iter().map(|c| c.0.len()).max().unwrap_or(1);
        for line in 0..height {
            for (i, w) in widths.iter().enumerate() {
                let cell = r[i].0.get(line).map_or("", String::as_str);
                out.push_str(&format!("| {}{} ", " ".repeat(w - width(cell)), cell));
            }
            out.push_str("|\n");
        }
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
    fn long_cells_wrap_like_tablewriter() {
        assert_eq!(cell_lines("short").0, ["short"]);
        assert_eq!(
            cell_lines("etcdserver: mvcc: database space exceeded").0,
            ["etcdserver: mvcc: database", "space exceeded"]
        );
        let url = "http://127.0.0.1:12345,http://127.0.0.1:23456";
        assert_eq!(cell_lines(url), (vec![url.to_string()], url.len()));
        // etcd 3.4's `endpoint status -w table` with a NOSPACE alarm (its errors column).
        let t = render(
            &["endpoint", "errors"],
            &[vec!["127.0.0.1:46379".into(), "memberID:11735172391864680521 alarm:NOSPACE ".into()]],
        );
        let want = "\
+-----------------+--------------------------------+
|    ENDPOINT     |             ERRORS             |
+-----------------+--------------------------------+
| 127.0.0.1:46379 |  memberID:11735172391864680521 |
|                 |                 alarm:NOSPACE  |
+-----------------+--------------------------------+
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
