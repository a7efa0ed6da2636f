//! Reading passwords: from the terminal without echo, or a line of standard input when it is not a
//! terminal (scripts pipe passwords in).

use std::io::{BufRead, IsTerminal, Write};

use crate::error::Result;

/// Prints `prompt` and reads one line, without echo on a terminal.
pub fn password(prompt: &str) -> Result<String> {
    print!("{prompt}");
    std::io::stdout().flush()?;
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let _echo = tty.then(NoEcho::new).flatten();
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    if tty {
        println!();
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Turns terminal echo off until dropped.
struct NoEcho(libc::termios);

impl NoEcho {
    fn new() -> Option<NoEcho> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed, then filled, termios.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Some(NoEcho(saved))
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `new`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.0) };
    }
}
