//! The engines' metrics relabelled into pdp's /metrics: any text and label, never a panic, and every
//! sample line carries the label.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str)| {
    let (text, label) = input;
    let mut seen = std::collections::HashSet::new();
    let out = pdp_serve::engine_metrics::relabel(text, label, &mut seen);
    for line in out.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        assert!(line.contains("engine=\""), "a sample without the engine label: {line:?}");
    }
});
