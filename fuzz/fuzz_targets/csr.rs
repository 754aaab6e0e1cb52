//! The DER CSR a node sends the CA to get a workload certificate (`Identity.Sign`): parsing,
//! the P-256 check and the proof of possession must refuse anything else without panicking.
#![no_main]

use ferrule_identity::csr::verify_csr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    match verify_csr(der) {
        // The CA signs this key: it must be a real part of the input, not something invented.
        Ok(verified) => assert!(
            !verified.public_key_spki.is_empty()
                && der
                    .windows(verified.public_key_spki.len())
                    .any(|w| w == verified.public_key_spki),
            "the verified key is not a slice of the CSR"
        ),
        Err(error) => drop(error.to_string()),
    }
});
