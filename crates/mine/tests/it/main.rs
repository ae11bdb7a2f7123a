//! Integration tests of the mining crate, on the real corpora in `../shared/corpus` where present
//! and on the project's own samples under `samples/`.

mod crg_pipeline;
mod pairs_corpus;
mod pairs_fuzz;
mod pairs_samples;
mod sections_corpus;
mod sections_eval;
