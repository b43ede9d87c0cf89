//! The man page and the shell completions of a binary, generated from the
//! same clap definition as its `--help`.
//!
//! Why here, and why from the binary itself (`echo-client --generate man`,
//! as ripgrep's `rg --generate man`): the clap `Command` is the one source of
//! every option and its help, so a page or a completion script made from it
//! cannot drift from `--help`; the binary is what ships, so a package build
//! (scripts/build.sh) and a deployed host (deploy/echo-deploy-remote) both
//! make them from the very release they install, and a test can run it. A
//! build.rs would need the definitions outside the binaries, and an xtask a
//! second program. The flag is hidden: it is for packagers, not for users.

use std::io::{self, Write};

use clap::{Arg, ArgMatches, Command, ValueEnum};
use clap_complete::Shell;
use clap_mangen::Man;

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generated {
    /// The man page, in roff.
    Man,
    /// The bash completion script.
    CompleteBash,
    /// The zsh completion script.
    CompleteZsh,
    /// The fish completion script.
    CompleteFish,
}

/// The manual section of a binary's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// 1: user commands (`echo-client`).
    UserCommands,
    /// 8: system administration commands and daemons (`echo-server`).
    Administration,
}

impl Section {
    fn number(self) -> &'static str {
        match self {
            Section::UserCommands => "1",
            Section::Administration => "8",
        }
    }
}

const SUBCOMMAND: &str = "generate";
const KIND: &str = "KIND";

/// `command` with the hidden `--generate KIND`. It is a flag subcommand (a
/// subcommand spelled like an option) rather than an option, so that it
/// stands alone where a subcommand is required (`echo-client --generate
/// man`) without making the real ones optional, and takes no other
/// argument: the usage and `--help` of the program stay as they were.
pub fn with_generate_option(command: Command) -> Command {
    let has_subcommands = command.has_subcommands();
    command
        .subcommand(
            Command::new(SUBCOMMAND)
                .long_flag(SUBCOMMAND)
                .hide(true)
                .arg(
                    Arg::new(KIND)
                        .required(true)
                        .value_parser(clap::builder::EnumValueParser::<Generated>::new()),
                ),
        )
        // A program without subcommands of its own: its options do not go
        // with --generate, and its help stays free of the `help` subcommand
        // that clap adds beside any subcommand. (A program with subcommands
        // has no options of its own but --help and --version.)
        .args_conflicts_with_subcommands(!has_subcommands)
        .disable_help_subcommand(!has_subcommands)
}

/// The `--generate` value on the command line, if any.
pub fn requested(matches: &ArgMatches) -> Option<Generated> {
    let generate = matches.subcommand_matches(SUBCOMMAND)?;
    generate.get_one::<Generated>(KIND).copied()
}

/// `kind` for `command` (its definition without `--generate`).
pub fn render(kind: Generated, mut command: Command, section: Section) -> Vec<u8> {
    let mut out = Vec::new();
    let name = command.get_name().to_string();
    let shell = match kind {
        Generated::Man => {
            write_man_page(command, section, &mut out).expect("writing to memory cannot fail");
            return out;
        }
        Generated::CompleteBash => Shell::Bash,
        Generated::CompleteZsh => Shell::Zsh,
        Generated::CompleteFish => Shell::Fish,
    };
    clap_complete::generate(shell, &mut command, name.clone(), &mut out);
    if shell == Shell::Bash {
        out = mend_bash_state_names(out, &name);
    }
    out
}

/// clap_complete's bash script (4.6.12) spells the state "in subcommand
/// check of echo-client" two ways: the loop that reads the words writes
/// `echo__client__subcmd__check`, the branches that complete look for
/// `echo__subcmd__client__subcmd__check`, so for a program with a hyphen
/// in its name no subcommand's options ever complete (clap-rs/clap#6421,
/// open). The branches are respelled as the loop spells the state.
fn mend_bash_state_names(script: Vec<u8>, name: &str) -> Vec<u8> {
    const SEPARATOR: &str = "__subcmd__";
    if !name.contains('-') {
        return script;
    }
    let misspelled = format!("{}{SEPARATOR}", name.replace('-', SEPARATOR));
    let spelled = format!("{}{SEPARATOR}", name.replace('-', "__"));
    String::from_utf8(script)
        .expect("clap_complete writes UTF-8")
        .replace(&misspelled, &spelled)
        .into_bytes()
}

/// One page for the whole program, so `man echo-client` shows every verb's
/// options: clap_mangen's own layout gives each subcommand a page of its own
/// (echo-client-send(1), ...), which would be four more files to install
/// for a handful of options each. Each subcommand gets a section of its own
/// instead, holding its synopsis, description and options as subsections.
fn write_man_page(mut command: Command, section: Section, out: &mut dyn Write) -> io::Result<()> {
    // Built, so that subcommands know their full name ("echo-client send")
    // and the help subcommand, which a page has no use for, is not added.
    command = command.disable_help_subcommand(true);
    command.build();
    let page = Man::new(command.clone()).section(section.number());
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = subcommand.get_bin_name().unwrap_or(subcommand.get_name());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let part = Man::new(subcommand.clone()).section(section.number());
        let mut roff = Vec::new();
        part.render_synopsis_section(&mut roff)?;
        part.render_description_section(&mut roff)?;
        part.render_options_section(&mut roff)?;
        // The subcommand's sections become subsections of its own.
        for line in String::from_utf8_lossy(&roff).lines() {
            match line.strip_prefix(".SH ") {
                Some(heading) => writeln!(out, ".SS {heading}")?,
                None => writeln!(out, "{line}")?,
            }
        }
    }
    page.render_version_section(out)
}
