//! `newapi-ops completions SHELL` and `newapi-ops man`: shell completions (clap_complete) and the
//! man pages (clap_mangen), generated from the same definitions as `--help`, so they never drift.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};

use crate::commands::Cli;
use crate::error::{Error, Result};
use crate::exit;
use crate::printer::Printer;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for, on stdout (bash: save it as
    /// /etc/bash_completion.d/newapi-ops; zsh: as `_newapi-ops` in a directory of your `$fpath`;
    /// fish: as ~/.config/fish/completions/newapi-ops.fish; PowerShell: dot-source it from your
    /// profile).
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (`newapi-ops.1`, `newapi-ops-diagnose.1`, ...) into this
    /// directory instead of printing the main page on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> Result<u8> {
    use clap_complete::Shell as S;
    let shell = match args.shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Powershell => S::PowerShell,
    };
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "newapi-ops", &mut out);
    write_stdout(&out)
}

pub fn man(args: &ManArgs, printer: &Printer) -> Result<u8> {
    let cmd = Cli::command();
    match &args.dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| Error::io("rendering the man page", e))?;
            write_stdout(&out)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let pages = pages(&cmd, "newapi-ops");
            for (name, page) in &pages {
                let mut out = Vec::new();
                clap_mangen::Man::new(page.clone())
                    .title(name.clone())
                    .render(&mut out)
                    .map_err(|e| Error::io(format!("rendering the man page {name}"), e))?;
                let path = dir.join(format!("{name}.1"));
                std::fs::write(&path, out)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            }
            printer.note(&format!(
                "wrote {} man pages into {} (try `man -l {}/newapi-ops.1`)",
                pages.len(),
                dir.display(),
                dir.display()
            ));
            Ok(exit::OK)
        }
    }
}

/// The command and every subcommand, each named as `man` knows it (`newapi-ops-backup-list`).
fn pages(cmd: &clap::Command, name: &str) -> Vec<(String, clap::Command)> {
    let mut out = vec![(name.to_string(), cmd.clone().display_name(name.to_string()))];
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        out.extend(pages(sub, &format!("{name}-{}", sub.get_name())));
    }
    out
}

fn write_stdout(bytes: &[u8]) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(exit::OK),
        // A closed pipe (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(Error::io("writing to stdout", e)),
    }
}
