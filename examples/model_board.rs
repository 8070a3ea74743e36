//! An EventStorming board as code: load the order-fulfilment model, validate
//! it, draw it, and print the Rust skeleton of one aggregate.
//!
//! ```text
//! cargo run --example model_board
//! ```
//!
//! It reads `examples/order_fulfilment.model.json`, prints the validation
//! report, writes `target/model/order_fulfilment.mmd` (Mermaid) and `.dot`
//! (Graphviz) — and `.svg` when Graphviz's `dot` is on `PATH` — then prints
//! the generated state, command and event types of the `Order` aggregate and
//! checks them against the model.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aether::model::Model;

/// The aggregate whose skeleton is printed.
const AGGREGATE: &str = "Order";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("model_board: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = manifest_dir.join("order_fulfilment.model.json");
    let model = Model::load(&source)?;
    println!(
        "Loaded {:?} from {}: {} contexts, {} aggregates, {} commands, {} events, {} policies, {} hotspots.",
        model.domain,
        source.display(),
        model.contexts.len(),
        model.aggregates().count(),
        model.commands().count(),
        model.events().count(),
        model.policies().count(),
        model.hotspots.len(),
    );

    // 1. Validate.
    let report = model.validate();
    println!("\n== Validation ==\n{report}");
    for hotspot in &model.hotspots {
        let on = hotspot.on.as_deref().unwrap_or("the board");
        println!("  open question on {on}: {}", hotspot.question);
    }

    // 2. Draw.
    let out_dir = target_dir(manifest_dir).join("model");
    std::fs::create_dir_all(&out_dir)?;
    let mermaid = out_dir.join("order_fulfilment.mmd");
    let dot = out_dir.join("order_fulfilment.dot");
    std::fs::write(&mermaid, model.to_mermaid())?;
    std::fs::write(&dot, model.to_dot())?;
    println!("\n== Drawings ==");
    println!("Mermaid:  {}", mermaid.display());
    println!("Graphviz: {}", dot.display());
    let svg = out_dir.join("order_fulfilment.svg");
    match std::process::Command::new("dot")
        .arg("-Tsvg")
        .arg(&dot)
        .arg("-o")
        .arg(&svg)
        .status()
    {
        Ok(status) if status.success() => println!("SVG:      {}", svg.display()),
        Ok(status) => println!("SVG:      not written, `dot` failed ({status})"),
        Err(e) => println!("SVG:      not written, Graphviz `dot` is not available ({e})"),
    }

    // 3. Bridge to code.
    let validated = model.into_validated().map_err(|report| {
        let errors = report.errors().count();
        format!("the model has {errors} error(s); no code generated")
    })?;
    let skeleton = validated
        .rust_skeleton(AGGREGATE)
        .ok_or_else(|| format!("the model has no aggregate {AGGREGATE:?}"))?;
    println!("\n== Rust skeleton of {AGGREGATE} ==\n{skeleton}");

    // The generated `OrderEvent::event_type` names, as the code would report
    // them at run time: the check passes until code or model changes.
    let declared: Vec<&str> = validated
        .model()
        .aggregate(AGGREGATE)
        .map(|a| a.events.iter().map(|e| e.name.as_str()).collect())
        .unwrap_or_default();
    match validated.model().check_event_types(AGGREGATE, &declared) {
        Ok(()) => println!("Event types of {AGGREGATE} match the model."),
        Err(drift) => println!("Drift: {drift}"),
    }
    if let Err(drift) = validated
        .model()
        .check_event_types(AGGREGATE, ["OrderPlaced", "OrderShipped"])
    {
        println!("A stale aggregate would be reported as: {drift}");
    }
    Ok(())
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `target/` at the
/// workspace root (the parent of this package).
fn target_dir(manifest_dir: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => manifest_dir.parent().unwrap_or(manifest_dir).join("target"),
    }
}
