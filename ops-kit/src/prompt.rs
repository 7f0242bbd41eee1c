//! Reading a secret (a PIN, a password) from standard input: the first
//! line, so it stays out of shell history and the process list, asked for
//! on standard error without echo when a person is typing.

use std::io::{BufRead, IsTerminal, Write};

/// The first line of standard input, without its line ending.
pub fn secret_line(prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let typing = stdin.is_terminal();
    #[cfg(unix)]
    let restore = if typing { hide_echo(&stdin) } else { None };
    if typing {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    #[cfg(unix)]
    if let Some(saved) = restore {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &saved);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Turns the terminal's echo off; the settings to restore.
#[cfg(unix)]
fn hide_echo(stdin: &std::io::Stdin) -> Option<nix::sys::termios::Termios> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let saved = tcgetattr(stdin).ok()?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(stdin, SetArg::TCSANOW, &quiet).ok()?;
    Some(saved)
}
