//! Integration tests of the mining crate, on the real corpora in `../shared/corpus` where present.

mod crg_pipeline;
mod pairs_corpus;
mod sections_corpus;
