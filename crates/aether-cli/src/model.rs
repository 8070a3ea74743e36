//! `aether model`: the model crate's validation and drawings.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aether_model::Model;
use clap::{Args, Subcommand, ValueEnum};

use crate::error::CliError;

/// EventStorming models: validate and draw.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Validate a model file: errors and warnings with their paths.
    ///
    /// Exit code 0 when the model has no errors (warnings allowed), 1 when
    /// it has errors, 2 when the file cannot be read or parsed.
    Check(CheckArgs),
    /// Draw a model as Mermaid, Graphviz DOT or SVG (SVG through Graphviz `dot`).
    Render(RenderArgs),
}

/// `aether model check`.
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  aether model check examples/order_fulfilment.model.json")]
pub(crate) struct CheckArgs {
    /// The model file (`.json`).
    file: PathBuf,
}

/// The drawing formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RenderFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz DOT.
    Dot,
    /// SVG, drawn by Graphviz `dot -Tsvg`.
    Svg,
}

/// `aether model render`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  aether model render board.model.json > board.mmd
  aether model render board.model.json --format svg -o board.svg")]
pub(crate) struct RenderArgs {
    /// The model file (`.json`).
    file: PathBuf,
    /// The drawing format.
    #[arg(long, short = 'f', value_enum, default_value_t = RenderFormat::Mermaid)]
    format: RenderFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// The Graphviz `dot` program used for SVG.
    #[arg(
        long,
        env = "AETHER_GRAPHVIZ",
        default_value = "dot",
        value_name = "PATH"
    )]
    graphviz: String,
}

pub(crate) fn run(command: ModelCommand) -> Result<u8, CliError> {
    match command {
        ModelCommand::Check(args) => check(&args.file),
        ModelCommand::Render(args) => render(args).map(|()| 0),
    }
}

fn check(file: &Path) -> Result<u8, CliError> {
    let model = Model::load(file)?;
    let report = model.validate();
    let errors = report.errors().count();
    let warnings = report.warnings().count();
    let mut out = std::io::stdout().lock();
    if !report.diagnostics.is_empty() {
        writeln!(out, "{report}").map_err(CliError::stdout)?;
    }
    writeln!(
        out,
        "{}: {} — {errors} error(s), {warnings} warning(s)",
        file.display(),
        if errors == 0 { "valid" } else { "invalid" }
    )
    .map_err(CliError::stdout)?;
    Ok(if errors == 0 { 0 } else { 1 })
}

fn render(args: RenderArgs) -> Result<(), CliError> {
    let model = Model::load(&args.file)?;
    let bytes = match args.format {
        RenderFormat::Mermaid => model.to_mermaid().into_bytes(),
        RenderFormat::Dot => model.to_dot().into_bytes(),
        RenderFormat::Svg => svg(&args.graphviz, &model.to_dot())?,
    };
    match &args.output {
        Some(path) => std::fs::write(path, &bytes).map_err(|source| CliError::Io {
            what: path.display().to_string(),
            source,
        }),
        None => std::io::stdout()
            .lock()
            .write_all(&bytes)
            .map_err(CliError::stdout),
    }
}

fn svg(program: &str, dot: &str) -> Result<Vec<u8>, CliError> {
    let failed = |detail: String| CliError::Graphviz {
        program: program.to_owned(),
        detail,
    };
    let mut child = Command::new(program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| failed("no standard input".to_owned()))?;
    let input = dot.to_owned();
    // Written from another thread so a large drawing cannot deadlock on full pipes.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    writer
        .join()
        .map_err(|_| failed("the writer thread panicked".to_owned()))?
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(failed(format!(
            "{}: {}",
            output.status,
            stderr.lines().next().unwrap_or("")
        )));
    }
    Ok(output.stdout)
}
