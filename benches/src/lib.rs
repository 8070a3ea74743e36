//! Criterion benchmarks of Aether, each beside a same-run baseline.
