//! A complete hearth worker: serves `upper`, answering every request with its body in
//! upper case, until you press Enter (or stdin closes).
//!
//! ```text
//! cargo run -p hearth-worker --example upper -- tcp://127.0.0.1:5555
//! hearth --broker tcp://127.0.0.1:5555 call upper 'hello'   # -> HELLO
//! ```

use hearth_worker::{serve_fn, WorkerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:5555".into());
    let worker = serve_fn(WorkerConfig::new([broker], "upper"), |body| {
        body.to_ascii_uppercase()
    })?;
    println!("serving `upper`; press Enter to stop");
    std::io::stdin().read_line(&mut String::new())?;
    worker.stop()?; // tells the broker DISCONNECT
    Ok(())
}
