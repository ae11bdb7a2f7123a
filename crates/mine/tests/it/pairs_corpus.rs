//! Pair normalisation over the real HH-RLHF corpus (being written).
