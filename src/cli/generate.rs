//! `atcr completions <shell>` and `atcr man`: generated from the command line's definition, so
//! they never disagree with `--help`. The packages install copies kept in `packaging/`
//! (`tests/cli.rs` checks that the copies match).

use std::io;

use clap_mangen::Man;

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut super::command(), "atcr", &mut script);
    super::write_out(&script)
}

/// Prints the manual page atcr(1), in roff: one page, every command in it with its options
/// (`clap_mangen`'s own page would send readers to an `atcr-<command>(1)` page per command).
pub fn man() -> anyhow::Result<()> {
    let mut cmd = super::command().disable_help_subcommand(true);
    cmd.build();
    let top = Man::new(cmd.clone()).manual("atcr manual");
    let mut page = String::new();
    // The roff preamble (how to print an apostrophe), once.
    page.push_str(&render(|w| top.render_title(w), true)?);
    page.push_str(&render(|w| top.render_name_section(w), false)?);
    page.push_str(&render(|w| top.render_synopsis_section(w), false)?);
    page.push_str(&render(|w| top.render_description_section(w), false)?);
    page.push_str(&render(|w| top.render_options_section(w), false)?);
    page.push_str(".SH COMMANDS\n");
    for command in leaves(&cmd) {
        page.push_str(&command_section(command)?);
    }
    page.push_str(&render(|w| top.render_version_section(w), false)?);
    super::write_out(page.as_bytes())
}

/// The commands that run something (`atcr user add`, not `atcr user`), in definition order.
fn leaves(cmd: &clap::Command) -> Vec<&clap::Command> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.has_subcommands() {
            out.extend(leaves(sub));
        } else {
            out.push(sub);
        }
    }
    out
}

/// One command as a subsection: its synopsis, what it does, its options.
fn command_section(command: &clap::Command) -> io::Result<String> {
    let man = Man::new(command.clone());
    let name = command.get_bin_name().unwrap_or(command.get_name());
    let synopsis = render(|w| man.render_synopsis_section(w), false)?;
    let description = render(|w| man.render_description_section(w), false)?;
    let options = render(|w| man.render_options_section(w), false)?;
    let body = [synopsis, description, options].map(|part| without_headings(&part));
    let name = name.replace('-', "\\-");
    Ok(format!(".SS \"{name}\"\n{}", body.join(".PP\n")))
}

/// What `write` renders, without the roff preamble unless `preamble`.
fn render(
    write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    preamble: bool,
) -> io::Result<String> {
    let mut out = Vec::new();
    write(&mut out)?;
    let text = String::from_utf8(out).map_err(io::Error::other)?;
    if preamble {
        return Ok(text);
    }
    Ok(without_lines(&text, &[".ie \\n(.g", ".el .ds Aq"]))
}

/// `roff` without its `.SH` section headings.
fn without_headings(roff: &str) -> String {
    without_lines(roff, &[".SH "])
}

/// `text` without the lines that start with one of `prefixes`.
fn without_lines(text: &str, prefixes: &[&str]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if !prefixes.iter().any(|p| line.starts_with(p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
