//! etcdctl's usage text (cobra with etcdctl's template), rendered from the clap command tree: shown
//! for `--help`, for a parent command given no subcommand, and on stdout after a flag error.

use clap::{Arg, ArgAction, Command};

/// Go's `text/tabwriter` with etcdctl's settings (min width 0, tab width 8, padding 1, padding by
/// tabs): consecutive lines with tab-separated cells form a block whose columns line up.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if !lines[i].contains('\t') {
            out.push_str(lines[i]);
            if i + 1 < lines.len() {
                out.push('\n');
            }
            i += 1;
            continue;
        }
        let end = (i..lines.len()).find(|&j| !lines[j].contains('\t')).unwrap_or(lines.len());
        let rows: Vec<Vec<&str>> = lines[i..end].iter().map(|l| l.split('\t').collect()).collect();
        let columns = rows.iter().map(|r| r.len() - 1).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                let w = rows.iter().filter(|r| c < r.len() - 1).map(|r| r[c].chars().count()).max().unwrap_or(0);
                (w + 1).div_ceil(8) * 8
            })
            .collect();
        for (k, r) in rows.iter().enumerate() {
            for (c, cell) in r.iter().enumerate() {
                out.push_str(cell);
                if c < r.len() - 1 {
                    out.push_str(&"\t".repeat((widths[c] - cell.chars().count()).div_ceil(8)));
                }
            }
            if i + k + 1 < lines.len() {
                out.push('\n');
            }
        }
        i = end;
    }
    out
}

/// Flags whose values are numbers, durations or lists print unquoted (Go's pflag `DefValue`).
fn unquoted(name: &str) -> bool {
    matches!(
        name,
        "dial-timeout"
            | "command-timeout"
            | "keepalive-time"
            | "keepalive-timeout"
            | "endpoints"
            | "limit"
            | "rev"
            | "ttl"
    )
}

/// One flag line: `  -w, --write-out="simple"\tset the output format ...`.
fn flag_line(a: &Arg) -> Option<(String, String)> {
    if a.is_hide_set() {
        return None;
    }
    let long = a.get_long()?;
    let short = a.get_short().map_or("   ".to_string(), |s| format!("-{s},"));
    let default: Vec<String> = a.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
    let switch = matches!(a.get_action(), ArgAction::SetTrue)
        || a.get_num_args().is_some_and(|n| n.min_values() == 0 && n.max_values() == 1);
    let value = if switch {
        format!("[={}]", default.first().map_or("false", String::as_str))
    } else if long == "endpoints" {
        format!("=[{}]", default.join(","))
    } else if unquoted(long) {
        format!("={}", default.first().map_or("", String::as_str))
    } else {
        format!("={}", crate::gojson::quote(default.first().map_or("", String::as_str)))
    };
    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
    Some((long.to_string(), format!("  {short} --{long}{value}\t{help}")))
}

fn flag_lines(args: Vec<(String, String)>) -> String {
    let mut args = args;
    args.sort();
    args.into_iter().map(|(_, l)| l + "\n").collect()
}

/// Runnable commands under `c`, depth first, sorted, with their paths relative to `c`.
fn commands(c: &Command, prefix: &str, out: &mut Vec<(String, String)>) {
    let mut subs: Vec<&Command> = c.get_subcommands().filter(|s| s.get_name() != "help" && !s.is_hide_set()).collect();
    subs.sort_by_key(|s| s.get_name());
    for s in subs {
        let path = format!("{prefix}{}", s.get_name());
        if s.has_subcommands() {
            commands(s, &format!("{path} "), out);
        } else {
            out.push((path, s.get_about().map(|a| a.to_string()).unwrap_or_default()));
        }
    }
}

/// The usage text of the command at `path` (names below the root).
pub fn render(root: &Command, path: &[String]) -> String {
    // Persistent flags of the ancestors are inherited (`endpoint --cluster`).
    let mut c = root;
    let mut inherited: Vec<(String, String)> = Vec::new();
    for p in path {
        match c.find_subcommand(p) {
            Some(s) => {
                inherited.extend(s.get_arguments().filter(|a| a.is_global_set()).filter_map(flag_line));
                c = s;
            }
            None => break,
        }
    }
    let own_globals: Vec<String> =
        c.get_arguments().filter(|a| a.is_global_set()).filter_map(|a| a.get_long().map(String::from)).collect();
    inherited.retain(|(name, _)| !own_globals.contains(name));
    let name = if path.is_empty() { "oxcdctl".to_string() } else { path.join(" ") };
    let about = c.get_about().map(|a| a.to_string()).unwrap_or_default();
    let use_line = match (path.is_empty(), c.get_overridden_usage().map(|u| u.to_string())) {
        (true, _) => "oxcdctl [flags]".to_string(),
        (false, Some(u)) => {
            format!("oxcdctl {}{u} [flags]", path[..path.len() - 1].iter().map(|p| format!("{p} ")).collect::<String>())
        }
        (false, None) => format!("oxcdctl {} [flags]", path.join(" ")),
    };
    let mut t = format!("NAME:\n\t{name} - {about}\n\nUSAGE:\n\t{use_line}\n\n");
    if path.is_empty() {
        t.push_str(&format!("VERSION:\n\t{}\n\n", env!("CARGO_PKG_VERSION")));
    }
    if c.has_subcommands() {
        t.push_str("API VERSION:\n\t3.4\n\n\nCOMMANDS:\n");
        let mut list = Vec::new();
        commands(c, "", &mut list);
        for (p, a) in list {
            t.push_str(&format!("\t{p}\t{a}\n"));
        }
        t.push('\n');
    }
    if let Some(long) = c.get_long_about() {
        t.push_str("DESCRIPTION:\n");
        for l in long.to_string().trim_matches(['\n', '\t', ' ']).split('\n') {
            t.push_str(&format!("\t{l}\n"));
        }
        t.push('\n');
    }
    let leaf = path.last().map_or("oxcdctl", String::as_str);
    let mut local: Vec<(String, String)> = c
        .get_arguments()
        .filter(|a| !a.is_positional() && (!a.is_global_set() || own_globals.iter().any(|g| a.get_long() == Some(g))))
        .filter_map(flag_line)
        .collect();
    local.push(("help".to_string(), format!("  -h, --help[=false]\thelp for {leaf}")));
    t.push_str("OPTIONS:\n");
    t.push_str(&flag_lines(local));
    let mut global: Vec<(String, String)> =
        root.get_arguments().filter(|a| !a.is_positional()).filter_map(flag_line).collect();
    global.extend(inherited);
    if !path.is_empty() {
        t.push_str("\nGLOBAL OPTIONS:\n");
        t.push_str(&flag_lines(global));
    } else {
        t.push_str(&flag_lines(global));
    }
    t.push('\n');
    tabwrite(&t)
}

/// The subcommand names `argv` selects, as far as they resolve (unique prefixes count, as with
/// cobra's prefix matching).
pub fn command_path(root: &Command, argv: &[String]) -> Vec<String> {
    let mut path = Vec::new();
    let mut c = root;
    for a in argv.iter().skip(1) {
        if a == "--" {
            break;
        }
        if a.starts_with('-') {
            continue;
        }
        let exact = c.find_subcommand(a);
        let found = exact.or_else(|| {
            let mut m = c.get_subcommands().filter(|s| s.get_name().starts_with(a.as_str()));
            match (m.next(), m.next()) {
                (Some(s), None) => Some(s),
                _ => None,
            }
        });
        match found {
            Some(s) => {
                path.push(s.get_name().to_string());
                c = s;
            }
            None => break,
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_pads_with_tabs_like_go() {
        let t = tabwrite("COMMANDS:\n\tgrant\tCreates leases\n\tkeep-alive\tKeeps leases alive (renew)\n\nx");
        assert_eq!(t, "COMMANDS:\n\tgrant\t\tCreates leases\n\tkeep-alive\tKeeps leases alive (renew)\n\nx");
    }
}
