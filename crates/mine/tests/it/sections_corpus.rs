//! Section splitting over the real survey corpus (being written).
