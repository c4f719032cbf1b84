//! The runbook loader on arbitrary bytes: size, binary and UTF-8 checks, YAML into the wire
//! type, analysis (actions, arguments, CEL expressions and their references). It must return
//! an error or a runbook, never panic or overflow its stack.
//!
//! `cargo +nightly fuzz run runbook_loader fuzz/corpus/runbook_loader` (the corpus is seeded
//! from runbooks/*.yaml by scripts or by hand).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(rb) = newapi_ops::runbook::model::load("fuzz.yaml", data, "fuzz") {
        // A runbook that loads must also describe itself.
        for s in &rb.steps {
            let _ = s.action.shown_args();
        }
    }
});
