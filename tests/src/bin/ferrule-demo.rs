//! `ferrule-demo`: the main demo; run it through `cargo xtask demo` (which builds everything).
use std::process::ExitCode;
use std::sync::Mutex;

use ferrule_tests::mesh::Mesh;

/// The running mesh, so Ctrl-C can tear it down before exiting.
static MESH: Mutex<Option<Mesh>> = Mutex::new(None);

fn teardown() {
    let mesh = MESH.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(mesh);
}

fn main() -> ExitCode {
    if let Err(e) = ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: tearing the demo cluster down");
        teardown();
        std::process::exit(130);
    }) {
        eprintln!("ferrule-demo: cannot install the Ctrl-C handler: {e}");
    }
    println!("==> starting a control plane and 2 node agents in a cluster of network namespaces");
    let mesh = Mesh::start(2, 2);
    *MESH.lock().unwrap_or_else(|e| e.into_inner()) = Some(mesh);
    let result = {
        let guard = MESH.lock().unwrap_or_else(|e| e.into_inner());
        ferrule_tests::demo::run(guard.as_ref().expect("mesh started"))
    };
    teardown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrule-demo: {e}");
            ExitCode::FAILURE
        }
    }
}
