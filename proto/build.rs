fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        // Sorted maps encode deterministically, so an unchanged resource encodes to the same
        // bytes and the control plane can tell that nothing changed.
        .btree_map(".")
        .compile_protos(&["proto/ferrule/v1/ferrule.proto"], &["proto"])?;
    Ok(())
}
